"""What a started trigger does: build the labeled span from the serving logs, then start a
training run on it with the alert recorded as the run's `trigger` (its lineage shows it).

Here the run is the command behind `make run` (`python -m pipelines.cli run`, kfp.local) in a
child process, so the service keeps answering webhooks meanwhile; with a KFP host it is a run
of the compiled pipeline package through the KFP API (pipelines/remote.py).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time

from flywheel import model_repository as repo
from flywheel import options
from flywheel import params as params_module
from pipelines import span_from_logs
from trigger.decide import Alert


@dataclasses.dataclass(frozen=True)
class Target:
    """The model the trigger retrains, and where its data and runs go."""
    repository: str
    model_name: str
    logs: str = ""                 # "" = <repository>/<model>/logs
    run_log_dir: str = "runs/trigger"
    sets: tuple[str, ...] = ()     # extra `section.key=value` settings for every run
    params_file: str = str(params_module.PARAMS_FILE)   # the settings every run reads


def trigger_record(alert: Alert, key: str) -> dict:
    """The run's `trigger` parameter: what the lineage record keeps about the alert."""
    return {"kind": "alert", "alert": alert.name, "labels": alert.labels, "starts_at": alert.starts_at,
            "summary": alert.annotations.get("summary", ""), "group": key}


def build_span(target: Target, params: params_module.Params, now: float | None = None) -> span_from_logs.SpanReport:
    """The span of the last `lookback_days` of logs; DataError when it has too few labeled rows."""
    now = time.time() if now is None else now
    since = dt.datetime.fromtimestamp(now - params.trigger.lookback_days * 86400, dt.timezone.utc).strftime("%Y-%m-%d")
    return span_from_logs.build(target.repository, target.model_name, params.trigger.span_dir, since=since,
                                pii_fields=params.monitoring.pii_fields or params.ingest.pii_columns,
                                pii_patterns=params.monitoring.pii_patterns, logs=target.logs,
                                min_rows=params.trigger.min_labeled_rows,
                                add_to_dvc=not span_from_logs.storage.is_remote(params.trigger.span_dir))


class LocalRun:
    """`python -m pipelines.cli run` on the span, in a child process; its console goes to a log file."""

    def __init__(self, target: Target, params: params_module.Params, span: span_from_logs.SpanReport, trigger: dict):
        os.makedirs(target.run_log_dir, exist_ok=True)
        self.log_file = os.path.abspath(os.path.join(target.run_log_dir, f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"))
        self.target = target
        self.versions_before = set(repo.versions(target.repository, target.model_name))
        command = [sys.executable, "-m", "pipelines.cli", "run", "--data", span.path, "--label", span.label,
                   "--model-name", target.model_name, "--model-repository", target.repository,
                   "--params", target.params_file, "--pii", *params.ingest.pii_columns,
                   "--set", f"trigger={json.dumps(trigger)}"]
        for assignment in target.sets:
            command += ["--set", assignment]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.run_id = f"local-pid-{self.proc.pid}"

    def wait(self) -> dict:
        code = self.proc.wait()
        pushed = sorted(set(repo.versions(self.target.repository, self.target.model_name)) - self.versions_before)
        return {"succeeded": code == 0, "exit_code": code, "pushed_version": pushed[-1] if pushed else None,
                "log": self.log_file}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ClusterRun:
    """A run of the compiled pipeline on Kubeflow (the KFP API; token from the pod's projected
    token or KF_PIPELINES_SA_TOKEN_PATH, as kfp.Client reads it)."""

    def __init__(self, target: Target, params: params_module.Params, span: span_from_logs.SpanReport, trigger: dict,
                 host: str):
        from pipelines import remote
        from pipelines.training_pipeline import arguments as pipeline_arguments

        settings = params_module.override(params, {"push.model_repository": target.repository,
                                                   "push.model_name": target.model_name,
                                                   "ingest.label": span.label,
                                                   **{k: v for k, v in options.parse_sets(list(target.sets)).items()
                                                      if "." in k}})
        self.arguments = pipeline_arguments(settings, span.path, trigger={**trigger, "submitted_to": host})
        self.host = host
        self.run_id = remote.submit(host, self.arguments, run_name=f"flywheel-{trigger['alert']}-{time.strftime('%Y%m%d-%H%M%S')}")

    def wait(self) -> dict:
        from pipelines import remote

        summary = remote.wait_and_summarize(self.host, self.run_id, self.arguments)
        return {"succeeded": summary.succeeded, "pushed_version": summary.pushed_version, "run_id": self.run_id}

    def stop(self) -> None:
        """The run belongs to Kubeflow: it goes on without the trigger."""


def start(target: Target, params: params_module.Params, span: span_from_logs.SpanReport, trigger: dict):
    host = params.trigger.kfp_host
    return ClusterRun(target, params, span, trigger, host) if host else LocalRun(target, params, span, trigger)
