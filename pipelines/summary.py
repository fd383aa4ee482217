"""What a person wants to know after a run, built from the steps' outputs.

The summary reads only what the steps record in their output artifacts' metadata (data version,
anomalies, metrics, blessing, push result) and which step failed with what error. Where those
come from depends on where the run ran: an adapter for kfp.local reads the local task
directories (pipelines/runner.py), one for Kubeflow reads the run through the KFP API and the
run record the push step writes to the model repository (pipelines/remote.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Protocol

from flywheel import names

# Each step's task, output artifact and the metadata keys the summary reads from it.
INGEST, VALIDATE, EVALUATE, PUSH = ("ingest", "examples"), ("validate", "anomalies"), \
    ("evaluate", "evaluation"), ("push", "pushed")
BLOCKING_COUNT = re.compile(r"(\d+) blocking anomal")  # components.validate.blocking_message
INFRA = ("infra-validate", "validation")   # kfp.local names the task after the component function
STEPS = ("ingest", "resolve", "statistics", "schema", "validate", "train", "evaluate", "infra-validate", "push")


class StepOutputs(Protocol):
    """The outputs of one run, wherever it ran."""
    failed_step: str          # "" when every step succeeded
    error: str                # the failed step's error, one paragraph

    def metadata(self, step: str, output: str) -> dict:
        """The metadata the step recorded on that output artifact ({} if none)."""

    def path(self, step: str, output: str) -> str | None:
        """Where that output artifact is, when it can be read from here."""


@dataclasses.dataclass
class RunSummary:
    data_path: str
    run_id: str
    succeeded: bool
    error: str = ""
    failed_step: str = ""
    data_version: str = ""
    anomalies_blocking: int = 0
    anomalies_other: int = 0
    metrics: dict = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    blessing_reason: str = ""
    fairness: str = ""        # one line: slices judged, the largest gap, or the criterion that failed
    baselines: dict = dataclasses.field(default_factory=dict)   # {"metric", "majority"|"mean", "linear"}
    selection: dict = dataclasses.field(default_factory=dict)   # train's model families (model_families.Choice)
    compared_with: int | None = None
    pushed: bool | None = None
    pushed_version: int | None = None
    pushed_label: str = ""                # the version label it was published under (canary, production)
    push_reason: str = ""
    infra: dict = dataclasses.field(default_factory=dict)   # infra validation: blessed, reason, p50_ms, p99_ms, ...
    seconds: float = 0.0
    step_seconds: dict = dataclasses.field(default_factory=dict)
    log_file: str = ""
    artifacts: dict = dataclasses.field(default_factory=dict)   # "step/output" -> path, where readable


def summarize(outputs: StepOutputs, data_path: str, run_id: str, seconds: float) -> RunSummary:
    summary = RunSummary(data_path=data_path, run_id=run_id, succeeded=not outputs.failed_step,
                         error=outputs.error, failed_step=outputs.failed_step, seconds=seconds)
    summary.data_version = outputs.metadata(*INGEST).get("data_version", "")
    summary.anomalies_blocking, summary.anomalies_other = _anomaly_counts(outputs)
    evaluation = outputs.metadata(*EVALUATE)
    if evaluation:
        summary.metrics = evaluation.get("metrics", {})
        summary.blessed, summary.blessing_reason = evaluation.get("blessed"), evaluation.get("reason", "")
        summary.fairness = evaluation.get("fairness", "")
        summary.baselines = evaluation.get("baselines") or {}
        summary.compared_with = evaluation.get("production_version")
    summary.selection = outputs.metadata("train", "model").get("selection") or {}
    summary.infra = outputs.metadata(*INFRA)
    pushed = outputs.metadata(*PUSH)
    summary.run_id = pushed.get("run_id") or run_id   # the pipeline job id the run's record is filed under
    if pushed:
        summary.pushed, summary.push_reason = pushed.get("pushed"), pushed.get("reason", "")
        summary.pushed_version = pushed.get("version") if pushed.get("pushed") else None
        summary.pushed_label = pushed.get("label", "") if pushed.get("pushed") else ""
    for step, output in (INGEST, VALIDATE, EVALUATE, INFRA, PUSH, ("train", "model"), ("statistics", "statistics")):
        where = outputs.path(step, output)
        if where:
            summary.artifacts[f"{step}/{output}"] = where
    return summary


def _anomaly_counts(outputs: StepOutputs) -> tuple[int, int]:
    """(blocking, other): from validate's report when it can be read (it is written even when
    validation fails), else from its metadata, else from the error it failed with."""
    where = outputs.path(*VALIDATE)
    report_file = os.path.join(where, names.ANOMALY_REPORT) if where else ""
    if report_file and os.path.isfile(report_file):
        with open(report_file) as f:
            report = json.load(f)
        blocking = sum(1 for a in report if a.get("blocking"))
        return blocking, len(report) - blocking
    validation = outputs.metadata(*VALIDATE)
    if validation:
        return int(validation.get("blocking", 0)), int(validation.get("anomalies", 0)) - int(validation.get("blocking", 0))
    found = BLOCKING_COUNT.search(outputs.error) if outputs.failed_step == "validate" else None
    return (int(found.group(1)) if found else 0), 0


def _metrics_text(metrics: dict) -> str:
    keys = [k for k in ("auc", "accuracy", "log_loss", "rmse", "mae") if isinstance(metrics.get(k), (int, float))]
    return " ".join(f"{k}={metrics[k]:.3f}" for k in keys) or "-"


def families_text(selection: dict) -> str:
    """One line: each family's eval score and training time, and the one chosen."""
    shown = ", ".join(f"{f} {c['eval_score']:.3f} in {c['seconds']:.1f}s" if c.get("eval_score") is not None
                      else f"{f} {c['status']}" for f, c in selection.get("candidates", {}).items())
    return f"eval {selection.get('metric', '')} {shown}; chose {selection.get('family')}"


def _infra_text(infra: dict) -> str:
    if not infra:
        return "-"
    figure = f"{infra['p99_ms']:.1f} ms" if isinstance(infra.get("p99_ms"), (int, float)) else ""
    return f"{figure} {'ok' if infra.get('blessed') else 'FAILED'}".strip()


def table(summaries: list[RunSummary]) -> str:
    header = ["data", "data version", "anomalies", "metrics (test)", "compared with", "blessed", "infra p99",
              "pushed", "time"]
    rows = []
    for s in summaries:
        rows.append([
            os.path.basename(s.data_path), (s.data_version or "-")[:16],
            f"{s.anomalies_blocking} blocking, {s.anomalies_other} other",
            _metrics_text(s.metrics), f"v{s.compared_with}" if s.compared_with is not None else "-",
            "-" if s.blessed is None else ("yes" if s.blessed else "no"), _infra_text(s.infra),
            (f"v{s.pushed_version}" + (f" as {s.pushed_label}" if s.pushed_label else "")) if s.pushed
            else ("no" if s.pushed is not None else "-"),
            f"{s.seconds:.0f}s"])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def line(row: list) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def describe(summaries: list[RunSummary], versions: list[int], repository: str, model_name: str,
             labels: dict[str, int] | None = None) -> str:
    """The end-of-run text: the table, one line of outcome per run, where things are, and which
    version each label names (`labels`; without them the highest version is production)."""
    lines = ["", "== Flywheel run summary ==", table(summaries)]
    for s in summaries:
        outcome = "ok" if s.succeeded else f"FAILED at {s.failed_step or 'start'}"
        lines.append(f"- {os.path.basename(s.data_path)}: {outcome}: {s.error or s.push_reason or s.blessing_reason}")
        if s.baselines and s.baselines.get("metric") in s.metrics:
            metric = s.baselines["metric"]
            others = ", ".join(f"{k} {v:.3f}" for k, v in s.baselines.items() if k != "metric")
            lines.append(f"  baselines ({metric}, same split): candidate {s.metrics[metric]:.3f}, {others}")
        if s.selection:
            lines.append(f"  model families: {families_text(s.selection)}")
        if s.fairness:
            lines.append(f"  fairness: {s.fairness}")
        if s.pushed and s.pushed_label:
            lines.append(f"  published v{s.pushed_version} as {s.pushed_label}"
                         + (": the sidecar sends it a share of traffic and promotes or rolls it back"
                            if s.pushed_label == names.CANARY else ""))
        if s.infra:
            lines.append(f"  infra validation: {s.infra.get('reason', '')} (load {s.infra.get('load_seconds', 0):.1f} s)")
    if labels is None:
        labels = {names.PRODUCTION: versions[-1]} if versions else {}
    named = "  ".join(f"{label}: v{labels[label]}" for label in names.VERSION_LABELS if label in labels)
    lines.append(f"model repository: {os.path.join(repository, model_name)}  versions: {versions or 'none'}"
                 f"  {named or 'production: none'}")
    if summaries:
        last = summaries[-1]
        validation = last.artifacts.get("/".join(VALIDATE))
        if validation and os.path.isfile(os.path.join(validation, names.REPORT_HTML)):
            lines.append(f"validation report: {os.path.join(validation, names.REPORT_HTML)}")
        # Infra validation's card is evaluate's with its own section added.
        card = last.artifacts.get("/".join(INFRA)) or last.artifacts.get("evaluate/evaluation")
        if card:
            lines.append(f"model card: {os.path.join(card, names.MODEL_CARD)}")
        if last.log_file:
            lines.append(f"full log: {last.log_file}")
    return "\n".join(lines)
