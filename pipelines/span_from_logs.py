"""`make span`: the serving side's logs become the next training span.

Prediction records (the rows a client sent, as the training file's columns) are joined with
feedback (ground truth) by request id over a date range of the logs (flywheel/serving_logs.py:
first feedback wins), PII is redacted again with the current settings (the log was redacted
with the settings of the day it was written), and the labeled rows are written as a CSV in the
training format: the features, then the label column named as the served model's metadata
names it. The file is added to DVC, so `make run DATA=<span> LABEL=<label>` trains on a
versioned span and ingest records its DVC md5 as the data version.

Rows without feedback are counted, never written; feedback without a logged prediction is
counted; a torn or non-JSON line is counted (a crash mid-append leaves one), and a record that
parses but does not have the record's shape is counted with the first few named.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flywheel import bundle, serving_logs, storage
from flywheel import model_repository as repo
from flywheel import options
from flywheel.errors import DataError

SPAN_PREFIX = "span-logs-"     # data/<dir>/span-logs-<UTC time>.csv
MAX_NAMED = 5                  # malformed records named in the report, at most


@dataclasses.dataclass
class SpanReport:
    """What went into a span from the logs, and what was left out and why."""
    path: str = ""
    label: str = ""
    since: str = ""
    until: str = ""
    prediction_files: int = 0
    feedback_files: int = 0
    predictions: int = 0             # accepted prediction requests read (status 200, with rows)
    rejected_requests: int = 0       # logged requests the sidecar refused (no rows to learn from)
    duplicate_predictions: int = 0   # the same request id logged again (a segment shipped twice)
    rows: int = 0                    # rows of the accepted requests
    labeled_rows: int = 0            # rows written
    unlabeled_rows: int = 0          # rows of requests nobody gave feedback for
    feedback: int = 0                # feedback records read
    duplicate_feedback: int = 0      # later answers for a request id already answered
    unjoinable_feedback: int = 0     # feedback for a request id with no prediction in the range
    mismatched_feedback: int = 0     # feedback whose label count differs from the request's rows
    torn_lines: int = 0              # lines that were cut off or were not JSON objects
    malformed: int = 0               # records that parse but lack the record's fields
    malformed_examples: list = dataclasses.field(default_factory=list)
    versions: dict = dataclasses.field(default_factory=dict)   # model version -> labeled rows
    dvc: str = ""                    # the .dvc file written, or why none

    def lines(self) -> list[str]:
        out = [f"span: {self.path or '(not written)'}  label column: {self.label}",
               f"  logs {self.since or 'start'} .. {self.until or 'now'}: {self.prediction_files} prediction "
               f"segment(s), {self.feedback_files} feedback file(s)",
               f"  predictions {self.predictions} requests / {self.rows} rows; labeled rows {self.labeled_rows}, "
               f"unlabeled rows {self.unlabeled_rows}",
               f"  feedback {self.feedback}: duplicate {self.duplicate_feedback}, without a prediction "
               f"{self.unjoinable_feedback}, label count not the request's rows {self.mismatched_feedback}",
               f"  dropped: refused requests {self.rejected_requests}, duplicate predictions "
               f"{self.duplicate_predictions}, torn lines {self.torn_lines}, malformed records {self.malformed}"]
        out += [f"    malformed: {example}" for example in self.malformed_examples]
        if self.versions:
            out.append("  labeled rows by served version: "
                       + ", ".join(f"v{v}: {n}" for v, n in sorted(self.versions.items(), key=lambda kv: str(kv[0]))))
        if self.dvc:
            out.append(f"  dvc: {self.dvc}")
        return out


def label_of(repository: str, model_name: str) -> str:
    """The label column as the served model's metadata names it (the training file's column)."""
    version = repo.production_version(repository, model_name)
    if version is None:
        raise DataError(repo.model_dir(repository, model_name), "no pushed version: the label column's name comes "
                        "from the served model's metadata", hint="Give the label column (LABEL=...).")
    return bundle.read_metadata(repo.version_dir(repository, model_name, version))["label"]


def _problem(record: dict) -> str:
    """Why a prediction record cannot give rows ("" when it can)."""
    if not isinstance(record.get("request_id"), str) or not record["request_id"]:
        return "no request_id"
    features = record.get("features")
    if not isinstance(features, list) or not all(isinstance(r, dict) for r in features):
        return "features is not a list of objects"
    if not features:
        return "features is empty"
    return ""


def _feedback_problem(record: dict) -> str:
    if not isinstance(record.get("request_id"), str) or not record["request_id"]:
        return "no request_id"
    if not isinstance(record.get("labels"), list) or not record["labels"]:
        return "labels is not a non-empty list"
    return ""


def _read(root: str, kind_dir: str, since: str, until: str, report: SpanReport) -> tuple[list[dict], int]:
    """Records of one kind, each tagged with where it came from (for naming malformed ones)."""
    records, files = [], serving_logs.list_files(root, kind_dir, since, until)
    for path in files:
        found, skipped = serving_logs.read_file(path)
        report.torn_lines += skipped
        for i, record in enumerate(found, 1):
            record["_where"] = f"{os.path.relpath(path, root) if not storage.is_remote(path) else path} record {i}"
        records += found
    return records, len(files)


def _malformed(report: SpanReport, record: dict, problem: str) -> None:
    report.malformed += 1
    if len(report.malformed_examples) < MAX_NAMED:
        report.malformed_examples.append(f"{record.get('_where', '?')}: {problem}")


def joined_rows(root: str, since: str = "", until: str = "", report: SpanReport | None = None
                ) -> tuple[list[tuple[dict, dict, object]], list[tuple[dict, dict, int]], SpanReport]:
    """-> (labeled: (prediction, row, label) per row, unlabeled: (prediction, row, index), report).
    Feedback is read from `since` on with no end: ground truth arrives after its prediction."""
    report = report or SpanReport()
    report.since, report.until = since, until
    predictions, report.prediction_files = _read(root, serving_logs.LOGGED_PREDICTIONS_DIR, since, until, report)
    feedback, report.feedback_files = _read(root, serving_logs.FEEDBACK_DIR, since, "", report)
    if not report.prediction_files:
        raise DataError(storage.join(root, serving_logs.LOGGED_PREDICTIONS_DIR),
                        f"no prediction log segments{' from ' + since if since else ''}"
                        f"{' until ' + until if until else ''}",
                        hint="The sidecar ships closed segments there (monitoring.segment_max_age_s); check "
                             "MODEL, SINCE and UNTIL.")
    by_id: dict[str, dict] = {}
    for record in predictions:
        if record.get("kind") != serving_logs.PREDICTION:
            _malformed(report, record, f"kind is {record.get('kind')!r}, not 'prediction'")
            continue
        if record.get("status") != 200:
            report.rejected_requests += 1
            continue
        problem = _problem(record)
        if problem:
            _malformed(report, record, problem)
            continue
        if record["request_id"] in by_id:
            report.duplicate_predictions += 1
            continue
        by_id[record["request_id"]] = record
        report.predictions += 1
        report.rows += len(record["features"])
    valid_feedback = []
    for record in feedback:
        problem = (f"kind is {record.get('kind')!r}, not 'feedback'" if record.get("kind") != serving_logs.FEEDBACK
                   else _feedback_problem(record))
        if problem:
            _malformed(report, record, problem)
        else:
            valid_feedback.append(record)
    report.feedback = len(valid_feedback)
    answers, report.duplicate_feedback = serving_logs.first_feedback(valid_feedback)
    report.unjoinable_feedback = sum(1 for request_id in answers if request_id not in by_id)
    labeled, unlabeled = [], []
    for request_id, prediction in by_id.items():
        answer = answers.get(request_id)
        rows = prediction["features"]
        if answer is not None and len(answer["labels"]) != len(rows):
            report.mismatched_feedback += 1
            answer = None
        if answer is None:
            unlabeled += [(prediction, row, i) for i, row in enumerate(rows)]
            continue
        for row, label in zip(rows, answer["labels"]):
            labeled.append((prediction, row, label))
    report.unlabeled_rows = len(unlabeled)
    return labeled, unlabeled, report


def to_csv(rows: list[dict], label: str, labels: list) -> bytes:
    """Rows and their labels as a CSV in the training format: the rows' columns in first-seen
    order, then the label. A missing value is an empty cell, as in the generated spans."""
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key != label:
                columns.setdefault(key, None)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*columns, label])
    for row, value in zip(rows, labels):
        writer.writerow([cell(row.get(c)) for c in columns] + [cell(value)])
    return out.getvalue().encode("utf-8")


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def dvc_add(path: str) -> str:
    """`dvc add` the span (the .dvc file's path), or why it was not added."""
    if storage.is_remote(path):
        return "not added: a remote span is versioned where it is stored"
    path = os.path.abspath(path)
    if not any((parent / ".dvc").is_dir() for parent in Path(path).parents):
        return f"not added: {os.path.dirname(path)} is not in a DVC repository"
    result = subprocess.run([sys.executable, "-m", "dvc", "add", "-q", path], capture_output=True, text=True,
                            cwd=os.path.dirname(path))
    if result.returncode != 0:
        raise RuntimeError(f"dvc add {path} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return path + ".dvc"


def build(repository: str, model_name: str, output_dir: str, since: str = "", until: str = "", label: str = "",
          pii_fields: tuple = (), pii_patterns: tuple = (), logs: str = "", min_rows: int = 1,
          add_to_dvc: bool = True, now: float | None = None) -> SpanReport:
    """Write the labeled span from the logs of `model_name` (under `logs`, default
    <repository>/<model>/logs); the report says what went in. DataError (and no file) when there
    are no logs or fewer than `min_rows` labeled rows."""
    from flywheel.redaction import Redactor

    report = SpanReport(label=label or label_of(repository, model_name))
    root = logs or serving_logs.logs_root(repository, model_name)
    labeled, _, report = joined_rows(root, since, until, report)
    if len(labeled) < max(min_rows, 1):
        raise DataError(root, f"{len(labeled)} labeled row(s) in the logs{' from ' + since if since else ''}"
                        f"{' until ' + until if until else ''}, fewer than the {max(min_rows, 1)} needed "
                        f"({report.unlabeled_rows} row(s) have no feedback yet)",
                        hint="Feedback arrives by POST /v1/feedback or `make label-import`.")
    redactor, flags = Redactor(pii_fields, pii_patterns), set()
    rows = redactor.rows([row for _, row, _ in labeled], flags)
    for prediction, _, _ in labeled:
        version = prediction.get("version")
        report.versions[version] = report.versions.get(version, 0) + 1
    report.labeled_rows = len(labeled)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    report.path = storage.join(output_dir, f"{SPAN_PREFIX}{stamp}.csv")
    if storage.exists(report.path):
        raise DataError(report.path, "exists already: a span is never overwritten", hint="Try again in a second.")
    storage.write_bytes(report.path, to_csv(rows, report.label, [v for _, _, v in labeled]))
    if add_to_dvc:
        try:
            report.dvc = dvc_add(report.path)
        except RuntimeError:
            storage.remove(report.path)
            raise
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel span", description=__doc__.splitlines()[0])
    options.add_model(parser)
    options.add_params(parser)
    parser.add_argument("--since", default="", help="first log date, YYYY-MM-DD (default: all)")
    parser.add_argument("--until", default="", help="last log date of the predictions, YYYY-MM-DD (default: all)")
    parser.add_argument("--label", default="", help="label column (default: the served model's metadata)")
    parser.add_argument("--output-dir", default=None, help="default: trigger.span_dir in params.yaml")
    parser.add_argument("--logs", default=None, help="log root (default: monitoring.log_destination in params.yaml, "
                        "else <repository>/<model>/logs)")
    parser.add_argument("--min-rows", type=int, default=1)
    parser.add_argument("--no-dvc", action="store_true", help="do not `dvc add` the span")
    args = parser.parse_args(argv)
    params = options.load(args)
    args.model_repository, args.model_name = options.model(args, params)
    args.output_dir = params.trigger.span_dir if args.output_dir is None else args.output_dir
    args.logs = params.monitoring.log_destination if args.logs is None else args.logs
    for name in ("since", "until"):
        value = getattr(args, name)
        if value and not _is_date(value):
            print(f"error: {name.upper()}={value!r} is not a date YYYY-MM-DD", file=sys.stderr)
            return 2
    try:
        report = build(args.model_repository, args.model_name, args.output_dir, args.since, args.until, args.label,
                       params.monitoring.pii_fields or params.ingest.pii_columns, params.monitoring.pii_patterns,
                       args.logs, args.min_rows, add_to_dvc=not args.no_dvc)
    except (DataError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    print(f"train on it: make run DATA={report.path} LABEL={report.label} MODEL={args.model_name}")
    return 0


def _is_date(text: str) -> bool:
    try:
        time.strptime(text, "%Y-%m-%d")
        return len(text) == 10
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
