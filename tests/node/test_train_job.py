"""The train step run once as a Kubernetes Job on the kubelet node: the pod is the TFJob's worker
template (manifests/training/tfjob.yaml: the component image, the train job's entrypoint, its
security settings, volumes and environment), so what the Training Operator would start is what
runs. One worker, so no TF_CONFIG: the Training Operator is not installed here, and one worker
of its job is this pod. Test settings: the arguments name this run's artifacts, and the requests
fit the node beside the serving pods (the template asks for 2 CPUs and 4 GiB).

The data is a table through the pipeline's ingest, statistics and schema steps on the host, on
the streaming path (Parquet shards), in a hostPath volume the template's claim binds to, owned
by the pods' UID as a provisioned volume would be. The model the pod exports is scored on the
host.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from components import model_inputs
from flywheel import artifacts, names
from flywheel.evaluation.evaluation_metrics import auc
from tests.support.cluster import ROOT
from tests.support.frames import make_frame, workspace
from tests.support.node_overlay import NAMESPACE, POD_UID, chown_tree, host_claim

TFJOB = ROOT / "manifests" / "training" / "tfjob.yaml"
CLAIM = "flywheel-training-data"
JOB = "flywheel-train-once"
MOUNT = "/data"
TRAIN = {"epochs": 4, "batch_size": 64, "min_steps": 0}
RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
TIMEOUT_S = 900


def job(template: dict, space: dict, root: Path) -> dict:
    pod = copy.deepcopy(template)
    spec = pod["spec"]
    (container,) = spec["containers"]
    inside = lambda path: f"{MOUNT}/{Path(path).relative_to(root)}"  # noqa: E731
    container["args"] = ["--examples", inside(space["examples"]), "--schema", inside(space["schema"]),
                         "--label", "label", "--model-dir", f"{MOUNT}/model", "--params", json.dumps(TRAIN),
                         "--engine", "streaming"]
    container["resources"] = RESOURCES
    container["imagePullPolicy"] = "Never"   # imported into the node's containerd, not pulled
    container.pop("ports")                   # the workers' gRPC port: one worker talks to none
    spec["restartPolicy"] = "Never"
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": JOB, "namespace": NAMESPACE},
            "spec": {"backoffLimit": 0, "template": pod}}


@pytest.fixture(scope="module")
def trained(deployed, tmp_path_factory):
    plane = deployed["plane"]
    root = tmp_path_factory.mktemp("training-data")
    space = workspace(root / "run", make_frame(4000, seed=3), **{
        "scale.mode": "streaming", "scale.batch_rows": 250, "scale.shard_rows": 1000})
    chown_tree(root)
    tfjob = yaml.safe_load(TFJOB.read_text())
    template = tfjob["spec"]["tfReplicaSpecs"]["Worker"]["template"]
    (volume,) = [v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == CLAIM
    plane.apply([*host_claim(CLAIM, NAMESPACE, root), job(template, space, root)])
    waited = plane.kubectl("wait", f"job/{JOB}", "-n", NAMESPACE, "--for=condition=complete",
                           f"--timeout={TIMEOUT_S}s", check=False, timeout=TIMEOUT_S + 30)
    logs = plane.kubectl("logs", f"job/{JOB}", "-n", NAMESPACE, check=False)
    pod = json.loads(plane.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"job-name={JOB}", "-o", "json").stdout)
    assert waited.returncode == 0, f"{waited.stderr}\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}\n" + \
        plane.kubectl("describe", "job", JOB, "-n", NAMESPACE, check=False).stdout[-3000:]
    return {"space": space, "model_dir": root / "model", "logs": logs.stdout, "pod": pod["items"][0]}


def test_the_train_step_runs_as_a_job_from_the_component_image(trained):
    pod = trained["pod"]
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/flywheel-mlops/flywheel-component:")
    assert container["command"] == ["python", "-m", "components.train_job"]
    (status,) = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0
    summary = json.loads(next(line for line in reversed(trained["logs"].splitlines()) if line.startswith('{"task"')))
    assert summary["task"] == "binary" and summary["train_rows"] > 0
    assert summary["strategy"] != "CollectiveAllReduceStrategy"   # one worker: no TF_CONFIG


def test_the_model_the_job_exported_scores_the_test_split(trained):
    model_dir = trained["model_dir"]
    assert (model_dir / "saved_model.pb").exists()
    assert (model_dir / "saved_model.pb").stat().st_uid == POD_UID   # written by the pod's user
    test = artifacts.read_split(trained["space"]["examples"], names.TEST)
    outputs, _ = model_inputs.predict(str(model_dir), test)
    assert auc(test["label"].to_numpy(), outputs[names.OUTPUT_SCORE]) > 0.7
