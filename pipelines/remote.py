"""The pipeline on Kubeflow: compile it, submit or schedule runs, wait for one and summarise it.

The summary of a cluster run comes from the KFP API (which task failed, and its error) and from
the run record the push step writes to the model repository (pipelines/summary.py): no ML
Metadata store is needed.
"""
from __future__ import annotations

import json
import os
import re
import time

import yaml

from flywheel import model_repository, names, storage
from pipelines.summary import RunSummary, summarize

PIPELINE_YAML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_pipeline.yaml")
BATCH_YAML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "batch_pipeline.yaml")


def compile_pipeline(output: str = PIPELINE_YAML, image: str = names.COMPONENT_IMAGE, pipeline=None,
                     volume: str = "") -> str:
    """Compile a pipeline (default: the training pipeline) to KFP IR YAML; `image` replaces the
    default component image in every executor; `volume` ("claim:/mount/path") mounts that
    PersistentVolumeClaim in every step, for clusters whose data and model repository live on a
    shared (ReadWriteMany) volume rather than in a bucket."""
    from kfp import compiler

    if pipeline is None:
        from pipelines.training_pipeline import training_pipeline as pipeline
    mount = parse_volume(volume) if volume else None

    compiler.Compiler().compile(pipeline, output)
    if image == names.COMPONENT_IMAGE and mount is None:
        return output
    with open(output) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    executors = documents[0]["deploymentSpec"]["executors"]
    for executor in executors.values():
        if executor.get("container", {}).get("image") == names.COMPONENT_IMAGE:
            executor["container"]["image"] = image
    if mount is not None:
        claim, mount_path = mount
        if len(documents) == 1:
            documents.append({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}})
        platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for label in executors:
            # The form kfp-kubernetes' mount_pvc writes: the claim's name as a constant.
            platform.setdefault(label, {}).setdefault("pvcMount", []).append(
                {"constant": claim, "mountPath": mount_path, "pvcNameParameter": {"runtimeValue": {"constant": claim}}})
    with open(output, "w") as f:
        yaml.safe_dump_all(documents, f, sort_keys=False)
    return output


def parse_volume(volume: str) -> tuple[str, str]:
    """"claim:/mount/path" -> (claim, path), or a ValueError naming what is wrong."""
    claim, _, mount_path = volume.partition(":")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", claim) or len(claim) > 253:
        raise ValueError(f"volume {volume!r}: the claim name {claim!r} is not a Kubernetes object name")
    if not mount_path.startswith("/") or mount_path.rstrip("/") == "":
        raise ValueError(f"volume {volume!r}: the mount path {mount_path!r} must be an absolute path below /")
    return claim, mount_path


def client(host: str):
    import kfp

    return kfp.Client(host=host)


def submit(host: str, arguments: dict, experiment: str = "flywheel", run_name: str | None = None,
           package: str = PIPELINE_YAML, service_account: str = names.PIPELINE_SERVICE_ACCOUNT) -> str:
    """Create a run on a KFP endpoint from the compiled package; returns the run id."""
    run = client(host).create_run_from_pipeline_package(
        package, arguments=arguments, experiment_name=experiment,
        run_name=run_name or f"flywheel-{time.strftime('%Y%m%d-%H%M%S')}", enable_caching=True,
        service_account=service_account)
    return run.run_id


def schedule(host: str, cron: str, arguments: dict, experiment: str = "flywheel", name: str = "flywheel-recurring",
             package: str = PIPELINE_YAML, max_concurrency: int = 1,
             service_account: str = names.PIPELINE_SERVICE_ACCOUNT) -> str:
    """Create a recurring run (KFP cron: six fields, seconds first); returns its id."""
    kfp_client = client(host)
    experiment_id = kfp_client.create_experiment(experiment).experiment_id
    recurring = kfp_client.create_recurring_run(
        experiment_id=experiment_id, job_name=name, cron_expression=cron, pipeline_package_path=package,
        params=arguments, max_concurrency=max_concurrency, no_catchup=True,
        service_account=service_account)
    return recurring.recurring_run_id


class ClusterOutputs:
    """summary.StepOutputs of a run on Kubeflow: task states and errors from the KFP API
    (a V2beta1Run), step metadata from the run record in the model repository."""

    def __init__(self, run, record: dict | None):
        self.steps = (record or {}).get("steps", {})
        self.failed_step, self.error = "", ""
        for task in (run.run_details.task_details or []) if run.run_details else []:
            if str(task.state).upper() == "FAILED" and not self.failed_step:
                self.failed_step = (task.display_name or "").removesuffix("-component")
                self.error = (getattr(task.error, "message", "") or "") if task.error else ""
        if not self.failed_step and str(run.state).upper() not in ("SUCCEEDED", "RUNTIMESTATE.SUCCEEDED"):
            self.failed_step, self.error = "run", f"run ended in state {run.state}"

    def metadata(self, step: str, output: str) -> dict:
        return self.steps.get(f"{step}/{output}", {})

    def path(self, step: str, output: str) -> str | None:
        return None


def read_run_record(repository: str, model_name: str, run_id: str) -> dict | None:
    path = model_repository.run_record_path(repository, model_name, run_id)
    try:
        return json.loads(storage.read_bytes(path)) if storage.exists(path) else None
    except (OSError, ValueError):
        return None


def wait_and_summarize(host: str, run_id: str, arguments: dict, timeout_s: float = 6 * 3600) -> RunSummary:
    """Wait for a submitted run to end; its summary as for a local run."""
    started = time.time()
    run = client(host).wait_for_run_completion(run_id, timeout=timeout_s)
    push = arguments.get("push", {})
    record = read_run_record(push.get("model_repository", ""), push.get("model_name", ""), run_id)
    return summarize(ClusterOutputs(run, record), arguments.get("data_path", ""), run_id, time.time() - started)
