"""Run the training pipeline: locally with kfp.local, or compiled and submitted to Kubeflow.

kfp.local's SubprocessRunner starts each task as `python3 -m kfp.dsl.executor_main` with the
`python3` on PATH (DESIGN.md), so local runs put this interpreter's bin/ first on PATH.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import os
import re
import sys
import time
import warnings

import yaml

from flywheel import names
from flywheel.params import Params
from pipelines import local_runners

PIPELINE_YAML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_pipeline.yaml")
DEFAULT_PIPELINE_ROOT = "runs/pipeline_root"


def arguments_from_params(params: Params, data_path: str, **overrides) -> dict:
    """Pipeline arguments from params.yaml, so a local run, a submitted run and `dvc repro`
    all train with the same settings."""
    arguments = {
        "data_path": data_path, "label": params.ingest.label, "pii_columns": list(params.ingest.pii_columns),
        "curated_schema": params.validate.curated_schema,
        "model_repository": params.push.model_repository, "model_name": params.push.model_name,
        "drift_linf": params.validate.drift_linf, "drift_jsd": params.validate.drift_jsd,
        "skew_linf": params.validate.skew_linf, "skew_jsd": params.validate.skew_jsd,
        "block_on_drift": params.validate.block_on_drift,
        "epochs": params.train.epochs, "batch_size": params.train.batch_size,
        "learning_rate": params.train.learning_rate, "hidden_units": list(params.train.hidden_units),
        "slice_feature": params.evaluate.slice_feature, "min_auc": params.evaluate.min_auc,
        "min_accuracy": params.evaluate.min_accuracy, "max_rmse": params.evaluate.max_rmse,
        "allowed_regression": params.evaluate.allowed_regression,
    }
    arguments.update(overrides)
    return arguments


@dataclasses.dataclass
class RunSummary:
    """What a person wants to know after a run, read back from the run's artifacts."""
    data_path: str
    run_dir: str
    succeeded: bool
    error: str = ""
    data_version: str = ""
    anomalies_blocking: int = 0
    anomalies_other: int = 0
    metrics: dict = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    blessing_reason: str = ""
    pushed: bool | None = None
    pushed_version: int | None = None
    push_reason: str = ""
    seconds: float = 0.0
    task_seconds: dict = dataclasses.field(default_factory=dict)


def _task_dir(run_dir: str, component: str) -> str:
    return os.path.join(run_dir, f"{component}-component")


def read_json(path: str) -> dict | list | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _output_metadata(run_dir: str, component: str, output: str) -> dict:
    """Artifact metadata as the executor wrote it (kfp.local keeps executor_output.json per task)."""
    executor_output = read_json(os.path.join(_task_dir(run_dir, component), "executor_output.json")) or {}
    for artifact in executor_output.get("artifacts", {}).get(output, {}).get("artifacts", []):
        return artifact.get("metadata", {})
    return {}


def summarize(run_dir: str, data_path: str, succeeded: bool, error: str, seconds: float) -> RunSummary:
    summary = RunSummary(data_path=data_path, run_dir=run_dir, succeeded=succeeded, error=error, seconds=seconds)
    summary.data_version = _output_metadata(run_dir, "ingest", "examples").get("data_version", "")
    report = read_json(os.path.join(_task_dir(run_dir, "validate"), "anomalies", names.ANOMALY_REPORT))
    if report is None:  # validate failed before writing its artifact: the error carries the report
        report = []
    entries = report.get("anomalies", []) if isinstance(report, dict) else report
    summary.anomalies_blocking = sum(1 for a in entries if a.get("blocking"))
    summary.anomalies_other = sum(1 for a in entries if not a.get("blocking"))
    evaluation_dir = os.path.join(_task_dir(run_dir, "evaluate"), "evaluation")
    evaluation = read_json(os.path.join(evaluation_dir, "metrics.json")) or {}
    summary.metrics = evaluation.get("metrics", {})
    blessing = read_json(os.path.join(evaluation_dir, names.BLESSING_FILE))
    if blessing:
        summary.blessed, summary.blessing_reason = blessing["blessed"], blessing["reason"]
    pushed = read_json(os.path.join(_task_dir(run_dir, "push"), "pushed", names.PUSH_RESULT_FILE))
    if pushed:
        summary.pushed, summary.push_reason = pushed["pushed"], pushed["reason"]
        summary.pushed_version = pushed["version"] if pushed["pushed"] else None
    return summary


class _Tee(io.TextIOBase):
    """Passes writes through to a stream and keeps the last lines: kfp.local prints each task's
    output through the parent's stdout, and the cause of a failure is the last exception line."""

    def __init__(self, stream, keep: int = 400):
        self.stream, self.lines, self._partial = stream, collections.deque(maxlen=keep), ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        *complete, self._partial = (self._partial + text).split("\n")
        self.lines.extend(complete)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


EXCEPTION_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_cause(lines) -> str:
    """The last `SomeError: message` line a failed task printed, without its module path."""
    for line in reversed(list(lines)):
        match = EXCEPTION_LINE.match(ANSI.sub("", line))
        if match:
            return f"{match.group(1)}: {match.group(2).strip()}"
    return ""


def run_local(arguments: dict, pipeline_root: str = DEFAULT_PIPELINE_ROOT, runner: str = "subprocess") -> RunSummary:
    """Run the whole DAG with kfp.local, each task in a subprocess or in the component image
    (`runner`, pipelines/local_runners.py); never raises for a failed task."""
    from pipelines.training_pipeline import PIPELINE_NAME, training_pipeline

    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tasks inherit it: keep TF's C++ banner out of the logs
    pipeline_root = os.path.abspath(pipeline_root)
    os.makedirs(pipeline_root, exist_ok=True)
    before = set(os.listdir(pipeline_root))
    # kfp.local warns once per task that the component's base_image is not a plain Python image.
    # Here that is by design: the image is the project's own, and this virtual environment (same
    # lock, project installed) is what it contains.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom",
                            category=RuntimeWarning)
    arguments = local_runners.init(runner, arguments, pipeline_root)
    started, error = time.time(), ""
    tee = _Tee(sys.stdout)
    try:
        with contextlib.redirect_stdout(tee):
            training_pipeline(**arguments)
    except RuntimeError as failure:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
        cause = failure_cause(tee.lines)
        error = ANSI.sub("", str(failure)) + (f" {cause}" if cause else "")
    seconds = time.time() - started
    created = sorted(set(os.listdir(pipeline_root)) - before)
    run_dirs = [d for d in created if d.startswith(PIPELINE_NAME)]
    run_dir = os.path.join(pipeline_root, run_dirs[-1]) if run_dirs else pipeline_root
    return summarize(run_dir, arguments.get("data_path", ""), not error, error, seconds)


def compile_pipeline(output: str = PIPELINE_YAML, image: str = names.COMPONENT_IMAGE) -> str:
    """Compile to KFP IR YAML; `image` replaces the default component image in every executor."""
    from kfp import compiler

    from pipelines.training_pipeline import training_pipeline

    compiler.Compiler().compile(training_pipeline, output)
    if image != names.COMPONENT_IMAGE:
        with open(output) as f:
            documents = list(yaml.safe_load_all(f))
        for document in documents:
            executors = (document or {}).get("deploymentSpec", {}).get("executors", {})
            for executor in executors.values():
                if executor.get("container", {}).get("image") == names.COMPONENT_IMAGE:
                    executor["container"]["image"] = image
        with open(output, "w") as f:
            yaml.safe_dump_all(documents, f, sort_keys=False)
    return output


def client(host: str):
    import kfp

    return kfp.Client(host=host)


def submit(host: str, arguments: dict, experiment: str = "flywheel", run_name: str | None = None,
           package: str = PIPELINE_YAML) -> str:
    """Create a run on a KFP endpoint from the compiled package; returns the run id."""
    run = client(host).create_run_from_pipeline_package(
        package, arguments=arguments, experiment_name=experiment,
        run_name=run_name or f"flywheel-{time.strftime('%Y%m%d-%H%M%S')}", enable_caching=True)
    return run.run_id


def schedule(host: str, cron: str, arguments: dict, experiment: str = "flywheel", name: str = "flywheel-recurring",
             package: str = PIPELINE_YAML, max_concurrency: int = 1) -> str:
    """Create a recurring run (KFP cron: six fields, seconds first); returns its id."""
    kfp_client = client(host)
    experiment_id = kfp_client.create_experiment(experiment).experiment_id
    recurring = kfp_client.create_recurring_run(
        experiment_id=experiment_id, job_name=name, cron_expression=cron, pipeline_package_path=package,
        params=arguments, max_concurrency=max_concurrency, no_catchup=True)
    return recurring.recurring_run_id

