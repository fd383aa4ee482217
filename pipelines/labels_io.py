"""`make label-export` / `make label-import`: ground truth from human raters.

Export: the logged predictions nobody has labeled yet, least confident first, one task per row,
as Label Studio import JSON (the row's features as `data`, the model's answer as a
pre-annotation in `predictions`, plus a labeling config beside it) and as CSV with an empty
`label` column. Import: Label Studio's JSON export (each task's latest annotation that was not
cancelled: a `choices` result for classification, a `number` result for regression) or the CSV
back (request_id, label, and optionally row), appended to the fleet's feedback log in the format
the sidecar writes (flywheel/serving_logs.py), so `make span` and every sidecar read it alike.

Labels are checked against the model that served the request (its label vocabulary or, for a
regression, a finite number) before anything is written: one bad label stops the import and
nothing is appended. A request whose rows are not all labeled is left for later (counted).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import socket
import sys
import time
from xml.sax.saxutils import quoteattr

from flywheel import bundle, names, serving_logs, storage
from flywheel import model_repository as repo
from flywheel import options
from flywheel.errors import DataError
from pipelines import span_from_logs

FROM_NAME, TO_NAME = "label", "row"     # the labeling config's control and object tag names
TASKS_FILE, CSV_FILE, CONFIG_FILE = "tasks.json", "tasks.csv", "label_config.xml"
CSV_KEYS = ("request_id", "row", "predicted", "confidence", "label")


class Domain:
    """The labels a rater may give for a model version: its vocabulary, or finite numbers."""

    def __init__(self, metadata: dict):
        self.task = metadata.get("task", names.BINARY)
        self.vocabulary = list(metadata.get("label_vocabulary") or [])
        self._by_text = {str(v): v for v in self.vocabulary}

    def parse(self, value, where: str):
        """A rater's label as the training file holds it; DataError naming `where` otherwise."""
        if self.task == names.REGRESSION:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not math.isfinite(number):
                raise DataError(where, f"label {value!r} is not a finite number (the model is a regression)")
            return number
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        if text not in self._by_text:
            raise DataError(where, f"label {value!r} is not one of the model's labels {self.vocabulary[:20]}")
        return self._by_text[text]


def _domains(repository: str, model_name: str):
    cache: dict = {}

    def of(version) -> Domain:
        if version not in cache:
            chosen = version if isinstance(version, int) and version in repo.versions(repository, model_name) \
                else repo.production_version(repository, model_name)
            if chosen is None:
                raise DataError(repo.model_dir(repository, model_name), "no pushed version to take the labels from")
            cache[version] = Domain(bundle.read_metadata(repo.version_dir(repository, model_name, chosen)))
        return cache[version]
    return of


def predicted(prediction, domain: Domain) -> tuple[object, float]:
    """(the model's answer as a label, its confidence 0.5-1 for binary; 0 when unknown)."""
    score, probabilities = prediction, None
    if isinstance(prediction, dict):
        score, probabilities = prediction.get(names.OUTPUT_SCORE), prediction.get(names.OUTPUT_PROBABILITIES)
    elif isinstance(prediction, list) and len(prediction) == 1:
        score = prediction[0]
    if isinstance(score, list) and len(score) == 1:
        score = score[0]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return None, 0.0
    if domain.task == names.REGRESSION:
        return float(score), 0.0
    if domain.task == names.MULTICLASS:
        index = int(score)
        confidence = max(probabilities) if isinstance(probabilities, list) and probabilities else 0.0
    else:
        index, confidence = int(score >= 0.5), max(score, 1.0 - score)
    value = domain.vocabulary[index] if 0 <= index < len(domain.vocabulary) else None
    return value, float(confidence)


def export(repository: str, model_name: str, output_dir: str, limit: int = 0, since: str = "", logs: str = ""
           ) -> dict:
    """Write tasks.json, tasks.csv and label_config.xml for unlabeled rows; returns counts."""
    root = logs or serving_logs.logs_root(repository, model_name)
    _, unlabeled, report = span_from_logs.joined_rows(root, since)
    domain_of = _domains(repository, model_name)
    items = []
    for prediction, row, index in unlabeled:
        domain = domain_of(prediction.get("version"))
        outputs = prediction.get("predictions") or []
        value, confidence = predicted(outputs[index], domain) if index < len(outputs) else (None, 0.0)
        items.append((confidence, prediction.get("time", 0.0), prediction, row, index, value, domain))
    items.sort(key=lambda item: (item[0], item[1]))   # least confident first, then oldest
    if limit:
        items = items[:limit]
    tasks, columns = [], {}
    for confidence, _, prediction, row, index, value, domain in items:
        for key in row:
            columns.setdefault(key, None)
        result = []
        if value is not None:
            kind = "number" if domain.task == names.REGRESSION else "choices"
            result = [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": kind,
                       "value": {"number": value} if kind == "number" else {"choices": [str(value)]}}]
        tasks.append({"data": {**row, "request_id": prediction["request_id"], "row": index,
                               "text": ", ".join(f"{k}: {v}" for k, v in row.items())},
                      "predictions": [{"model_version": str(prediction.get("version")), "score": confidence,
                                       "result": result}],
                      "_csv": [prediction["request_id"], index, "" if value is None else value, f"{confidence:.4f}", ""]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_KEYS, *columns])
    for task in tasks:
        writer.writerow([*task.pop("_csv"), *(span_from_logs.cell(task["data"].get(c)) for c in columns)])
    domain = domain_of(None)
    storage.write_text(storage.join(output_dir, CSV_FILE), out.getvalue())
    storage.write_text(storage.join(output_dir, TASKS_FILE), json.dumps(tasks, indent=1))
    storage.write_text(storage.join(output_dir, CONFIG_FILE), label_config(domain))
    return {"tasks": len(tasks), "unlabeled_rows": report.unlabeled_rows, "labeled_elsewhere": report.labeled_rows,
            "dir": output_dir}


def label_config(domain: Domain) -> str:
    """Label Studio's labeling config for these tasks (Setup > Labeling Interface > Code)."""
    if domain.task == names.REGRESSION:
        control = f'  <Number name="{FROM_NAME}" toName="{TO_NAME}" required="true"/>\n'
    else:
        choices = "".join(f"    <Choice value={quoteattr(str(v))}/>\n" for v in domain.vocabulary)
        control = f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" required="true">\n{choices}  </Choices>\n'
    return f'<View>\n  <Text name="{TO_NAME}" value="$text"/>\n{control}</View>\n'


# --- import ------------------------------------------------------------------------------------

def read_label_studio(data: bytes, source: str) -> list[tuple[str, int | None, object, str]]:
    """(request_id, row, raw label, where) per annotated task of a Label Studio JSON export."""
    try:
        tasks = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(source, f"not JSON: {str(error)[:200]}")
    if not isinstance(tasks, list):
        raise DataError(source, "a Label Studio JSON export is a list of tasks")
    out = []
    for i, task in enumerate(tasks):
        where = f"{source} task {task.get('id', i) if isinstance(task, dict) else i}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataError(where, "a task is an object with a 'data' object")
        request_id, row = task["data"].get("request_id"), task["data"].get("row")
        if not isinstance(request_id, str) or not request_id:
            raise DataError(where, "data.request_id is missing (export the tasks `make label-export` wrote)")
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            continue
        latest = max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))
        value = _result_value(latest.get("result"), where)
        if value is not None:
            out.append((request_id, row if isinstance(row, int) else None, value, where))
    return out


def _result_value(results, where: str):
    for result in results if isinstance(results, list) else []:
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, dict) or (result.get("from_name") not in (None, FROM_NAME)):
            continue
        if "choices" in value:
            choices = value["choices"]
            if not isinstance(choices, list) or len(choices) != 1:
                raise DataError(where, f"a label is one choice, got {choices!r}")
            return choices[0]
        if "number" in value:
            return value["number"]
    return None


def read_csv(data: bytes, source: str) -> list[tuple[str, int | None, object, str]]:
    """(request_id, row, raw label, where) per CSV line with a label (request_id,label[,row])."""
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        fields = reader.fieldnames or []
    except UnicodeDecodeError as error:
        raise DataError(source, f"not UTF-8 text: {error}")
    missing = [c for c in ("request_id", "label") if c not in fields]
    if missing:
        raise DataError(source, f"missing column(s) {missing}; the header is {fields}",
                        hint="The CSV has request_id,label and optionally row.")
    out = []
    for line, record in enumerate(reader, start=2):
        where = f"{source} line {line}"
        request_id, label, row = record.get("request_id") or "", (record.get("label") or "").strip(), record.get("row")
        if not request_id:
            raise DataError(where, "request_id is empty")
        if not label:
            continue
        if row not in (None, ""):
            try:
                row = int(row)
            except ValueError:
                raise DataError(where, f"row {row!r} is not a row number", column="row")
        else:
            row = None
        out.append((request_id, row, label, where))
    return out


def import_labels(path: str, repository: str, model_name: str, logs: str = "", now: float | None = None) -> dict:
    """Append the labels of a Label Studio JSON export or a CSV to the feedback log; counts."""
    data = storage.read_bytes(path)
    is_json = path.lower().endswith(".json") or data.lstrip()[:1] in (b"[", b"{")
    entries = read_label_studio(data, path) if is_json else read_csv(data, path)
    root = logs or serving_logs.logs_root(repository, model_name)
    labeled, unlabeled, _ = span_from_logs.joined_rows(root)
    rows_of = {}
    for prediction, _, index in unlabeled:
        rows_of.setdefault(prediction["request_id"], (prediction, len(prediction["features"])))
    answered = {prediction["request_id"] for prediction, _, _ in labeled}
    domain_of = _domains(repository, model_name)
    given: dict[str, dict[int, object]] = {}
    already, unknown = set(), []
    for request_id, row, raw, where in entries:
        if request_id in answered:
            already.add(request_id)
            continue
        if request_id not in rows_of:
            unknown.append(f"{where}: request {request_id}")
            continue
        prediction, n_rows = rows_of[request_id]
        labels = given.setdefault(request_id, {})
        row = len(labels) if row is None else row
        if not 0 <= row < n_rows:
            raise DataError(where, f"row {row} is not a row of request {request_id} ({n_rows} row(s))")
        if row in labels:
            raise DataError(where, f"request {request_id} row {row} is labeled twice in this file")
        labels[row] = domain_of(prediction.get("version")).parse(raw, where)
    if unknown:
        raise DataError(path, f"{len(unknown)} label(s) for requests not in the prediction log, e.g. "
                        + "; ".join(unknown[:3]), hint="Check MODEL: labels go to the model that served the request.")
    complete = {rid: [labels[i] for i in range(rows_of[rid][1])] for rid, labels in given.items()
                if len(labels) == rows_of[rid][1]}
    from monitoring.feedback import FeedbackLog

    instance = f"label-import-{socket.gethostname()}-{int(time.time() * 1000)}"
    feedback_log = FeedbackLog(root, instance, (lambda: now) if now is not None else time.time)
    clock = time.time() if now is None else now
    records = [{"format": serving_logs.FORMAT, "kind": serving_logs.FEEDBACK, "time": clock, "request_id": rid,
                "model": model_name, "pod": instance, "feedback_id": feedback_log.new_id(), "labels": labels}
               for rid, labels in complete.items()]
    feedback_log.append(records)
    return {"requests": len(records), "rows": sum(len(r["labels"]) for r in records),
            "incomplete_requests": len(given) - len(complete), "already_labeled": len(already),
            "entries": len(entries)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel labels", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("export", "import"))
    options.add_model(parser)
    options.add_params(parser)
    parser.add_argument("--logs", default=None, help="log root (default: monitoring.log_destination in params.yaml)")
    parser.add_argument("--output-dir", default=os.path.join("runs", "labels"), help="export: where the files go")
    parser.add_argument("-n", "--limit", type=int, default=0, help="export: at most this many rows (0: all)")
    parser.add_argument("--since", default="", help="export: logs from this date, YYYY-MM-DD")
    parser.add_argument("--file", default="", help="import: a Label Studio JSON export or a CSV")
    args = parser.parse_args(argv)
    params = options.load(args)
    args.model_repository, args.model_name = options.model(args, params)
    if args.logs is None:
        args.logs = params.monitoring.log_destination
    try:
        if args.command == "export":
            counts = export(args.model_repository, args.model_name, args.output_dir, args.limit, args.since, args.logs)
            print(f"{counts['tasks']} task(s) of {counts['unlabeled_rows']} unlabeled row(s), least confident first: "
                  f"{storage.join(counts['dir'], TASKS_FILE)} (Label Studio import; labeling config "
                  f"{CONFIG_FILE}) and {CSV_FILE}")
        else:
            if not args.file:
                print("error: give the file: make label-import FILE=export.json|labels.csv", file=sys.stderr)
                return 2
            counts = import_labels(args.file, args.model_repository, args.model_name, args.logs)
            print(f"imported {counts['rows']} label(s) of {counts['requests']} request(s) into the feedback log; "
                  f"left for later: {counts['incomplete_requests']} request(s) not fully labeled; "
                  f"skipped: {counts['already_labeled']} already labeled")
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
