"""A Kubeflow Pipelines run on the real node, end to end: the training pipeline, compiled with its
data and model repository on a volume (`make compile VOLUME=claim:/path`), is submitted to KFP's
API server as `make submit` submits it; the API server turns it into an Argo Workflow, Argo's
controller runs it, every step's driver (KFP's, as an image) resolves its inputs in ML Metadata and
every executor's launcher (KFP's, copied into the component image) moves its artifacts through
the object store; the persistence agent, a pod, reports the Workflow back to the API. The run
must train and push a version into the volume, and the API must report it done, task by task.

What runs where: the API server, MariaDB, moto (the S3 store), ML Metadata's service and Argo's
controller on the host (controlplane/cluster.py); the persistence agent, drivers and executors
in pods, reaching the host through Services without selectors (controlplane/kfp.py). Images are
built here from KFP 2.14.3's module, never pulled.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from controlplane import kfp
from flywheel import names, params
from flywheel.params import DataParams, IngestParams
from pipelines import remote
from pipelines.training_pipeline import arguments as pipeline_arguments
from tests.support.cluster import ROOT
from tests.support.node_overlay import chown_tree, host_claim
from tools import datagen

NAMESPACE = kfp.NAMESPACE
CLAIM = "flywheel-kfp-volume"
MOUNT = "/mnt/flywheel"
ROWS = 2000
TIMEOUT_S = 1500
STEPS = ("ingest", "resolve", "statistics", "schema", "validate", "train", "evaluate", "infra_validate", "push")


@pytest.fixture(scope="module")
def kubeflow(kfp_backend, cluster, tmp_path_factory):
    """KFP's backend (conftest.py) with what the run needs of the namespace: the pipeline's
    identity and rights, as `kubectl apply -k manifests/…` gives them, and the volume, a hostPath
    the claim binds to. Returns kfp_backend's endpoints and "volume", its folder on the host."""
    plane, _ = cluster
    plane.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "manifests" / "base" / "pipeline-rbac.yaml"))
    volume = tmp_path_factory.mktemp("kfp-volume")
    plane.apply(host_claim(CLAIM, NAMESPACE, volume))
    return {**kfp_backend, "volume": volume}


def wait_for_run(client, run_id: str) -> object:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        run = client.get_run(run_id)
        if run.state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED") or time.monotonic() > deadline:
            return run
        time.sleep(5)


def diagnosis(plane, run) -> str:
    pods = plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout
    failed = [line.split()[0] for line in pods.splitlines()[1:] if "Error" in line or "Failed" in line]
    logs = "".join(plane.kubectl("logs", "-n", NAMESPACE, pod, "--all-containers", "--tail=40", check=False).stdout
                   for pod in failed[:3])
    return f"run state {run.state}: {run.error}\n{pods}\n{logs}\n{plane.log_tail(f'workflow-controller-{NAMESPACE}')}"


# Run by ML Metadata's environment (ml_metadata is not in Flywheel's): the run's artifacts as
# KFP's launcher recorded them, read with MLMD's own gRPC client.
READ_ARTIFACTS = """
import json, sys
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
host, port = sys.argv[1].rsplit(":", 1)
store = metadata_store.MetadataStore(pb.MetadataStoreClientConfig(host=host, port=int(port)))
run = store.get_context_by_type_and_name("system.PipelineRun", sys.argv[2])
types = {t.id: t.name for t in store.get_artifact_types()}
print(json.dumps([{"type": types[a.type_id], "uri": a.uri,
                   "properties": {k: v.double_value or v.int_value or v.string_value
                                  for k, v in a.custom_properties.items()}}
                  for a in store.get_artifacts_by_context(run.id)]))
"""


def recorded_artifacts(mlmd: str, run_id: str) -> list[dict]:
    result = subprocess.run([str(kfp.MLMD_PYTHON), "-c", READ_ARTIFACTS, mlmd, run_id], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stored_objects(s3: str, uri: str) -> list[str]:
    """The objects under a minio://bucket/key artifact URI in the run's object store (moto)."""
    import boto3

    bucket, _, prefix = uri.removeprefix("minio://").partition("/")
    client = boto3.client("s3", endpoint_url=s3, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_a_submitted_run_trains_and_pushes_on_the_node(kubeflow, cluster, tmp_path):
    host, volume = kubeflow["host"], kubeflow["volume"]
    plane, _ = cluster
    datagen.write_spans(DataParams(rows_per_span=ROWS, spans=1), volume / "spans", IngestParams())
    chown_tree(volume)   # owned by the pods' user, as a provisioned volume is
    package = remote.compile_pipeline(str(tmp_path / "training.yaml"), volume=f"{CLAIM}:{MOUNT}")
    settings = params.override(params.load(), {"train.epochs": 4, "train.min_steps": 0,
                                               "push.model_repository": f"{MOUNT}/models"})
    arguments = pipeline_arguments(settings, f"{MOUNT}/spans/{datagen.span_file(1)}",
                                   trigger={"kind": "manual", "by": "test", "command": "submit"})
    started = time.monotonic()
    run_id = remote.submit(host, arguments, package=package)
    run = wait_for_run(remote.client(host), run_id)
    took = time.monotonic() - started
    assert run.state == "SUCCEEDED", diagnosis(plane, run)

    # The summary `make submit WAIT=1` prints, from the API and the run record the push step
    # wrote into the volume (read here where the host sees it).
    on_host = {**arguments, "push": {**arguments["push"], "model_repository": str(volume / "models")}}
    summary = remote.wait_and_summarize(host, run_id, on_host, timeout_s=60)
    assert summary.succeeded and summary.pushed, summary
    assert summary.pushed_version == 1 and summary.pushed_label == names.PRODUCTION, summary
    model = volume / "models" / names.DEFAULT_MODEL_NAME
    assert sorted(p.name for p in model.iterdir() if p.name.isdigit()) == ["1"]

    # The launchers recorded every output in ML Metadata and stored it in the object store.
    artifacts = recorded_artifacts(kubeflow["mlmd"], run_id)
    by_type: dict[str, list[dict]] = {}
    for artifact in artifacts:
        by_type.setdefault(artifact["type"], []).append(artifact)
    (metrics,) = by_type["system.Metrics"]
    assert 0.5 < metrics["properties"]["auc"] <= 1.0, metrics
    assert len(by_type["system.HTML"]) == 4 and len(by_type["system.Model"]) == 1, sorted(by_type)
    for artifact in [*by_type["system.HTML"], *by_type["system.Model"]]:
        assert stored_objects(kubeflow["s3"], artifact["uri"]), artifact["uri"]

    # The API reports every step of the DAG, each done (the persistence agent's reports).
    reported = {t.display_name: t for t in run.run_details.task_details}
    tasks = {step: reported.get(f"{step.replace('_', '-')}-component") for step in STEPS}
    assert {step: getattr(task, "state", None) for step, task in tasks.items()} == dict.fromkeys(STEPS, "SUCCEEDED"), (
        {name: t.state for name, t in reported.items()})

    lines = [f"run {run_id} ({run.display_name}): {run.state} in {took:.0f} s; the API's tasks:"]
    for step in STEPS:
        task = tasks[step]
        lines.append(f"  {step:<15} {task.state:<10} {(task.end_time - task.start_time).total_seconds():5.0f} s")
    lines.append(f"ML Metadata: {len(artifacts)} artifacts ("
                 + ", ".join(f"{len(v)} {k}" for k, v in sorted(by_type.items())) + f"); auc {metrics['properties']['auc']:.3f}")
    print("\n" + "\n".join(lines))
