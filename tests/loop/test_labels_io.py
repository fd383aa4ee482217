"""Human labels: unlabeled predictions out as Label Studio tasks and CSV, raters' results back in
as feedback records, round trip on the documented formats, with a version the pipeline pushed."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel import serving_logs
from flywheel.errors import DataError
from pipelines import labels_io, span_from_logs
from tests.support.log_files import prediction, write_feedback, write_segment
from tests.support.servers import MODEL_NAME, ROOT, push_version

T0 = 1_767_600_000.0


@pytest.fixture
def repository(tmp_path, exported_versions) -> Path:
    """Version 1 pushed; logs of four requests, one already answered by a client."""
    repository = tmp_path / "model_repository"
    push_version(exported_versions, repository, 1)
    logs = serving_logs.logs_root(str(repository), MODEL_NAME)
    row = {"trip_miles": 2.5, "payment_type": "Cash", "fare": 9.0, "company": "Company 1"}
    write_segment(logs, [prediction("sure", [row], [0.97], T0), prediction("unsure", [row, row], [0.55, 0.40], T0 + 1),
                         prediction("mid", [row], [0.2], T0 + 2), prediction("done", [row], [0.6], T0 + 3)], seq=1)
    write_feedback(logs, [("done", [1])], T0 + 5)
    return repository


def annotate(tasks: list[dict], choices: dict[tuple[str, int], str]) -> list[dict]:
    """Label Studio's JSON export of these tasks: ids, and an annotation per labeled task."""
    exported = []
    for i, task in enumerate(tasks, 1):
        key = (task["data"]["request_id"], task["data"]["row"])
        annotations = [] if key not in choices else [{
            "id": 100 + i, "was_cancelled": False, "created_at": "2026-01-06T10:00:00Z",
            "result": [{"from_name": "label", "to_name": "row", "type": "choices",
                        "value": {"choices": [choices[key]]}}]}]
        exported.append({"id": i, "data": task["data"], "annotations": annotations, "predictions": []})
    return exported


def test_export_least_confident_first_and_label_studio_round_trip(tmp_path, repository):
    out = tmp_path / "labels"
    counts = labels_io.export(str(repository), MODEL_NAME, str(out))
    assert counts["tasks"] == 4 and counts["unlabeled_rows"] == 4
    tasks = json.loads((out / labels_io.TASKS_FILE).read_text())
    order = [(t["data"]["request_id"], t["data"]["row"]) for t in tasks]
    assert order == [("unsure", 0), ("unsure", 1), ("mid", 0), ("sure", 0)]     # confidence .55, .60, .80, .97
    pre = tasks[0]["predictions"][0]
    assert pre["result"][0]["value"] == {"choices": ["1"]} and pre["model_version"] == "1"
    assert tasks[1]["predictions"][0]["result"][0]["value"] == {"choices": ["0"]}
    assert '<Choice value="0"/>' in (out / labels_io.CONFIG_FILE).read_text()
    with open(out / labels_io.CSV_FILE) as f:
        header = next(csv.reader(f))
    assert header[:5] == list(labels_io.CSV_KEYS) and "trip_miles" in header

    # A rater labels both rows of "unsure" and "mid"; "sure" is left for later.
    export = tmp_path / "export.json"
    export.write_text(json.dumps(annotate(tasks, {("unsure", 0): "1", ("unsure", 1): "0", ("mid", 0): "0"})))
    result = labels_io.import_labels(str(export), str(repository), MODEL_NAME, now=T0 + 100)
    assert (result["requests"], result["rows"], result["incomplete_requests"]) == (2, 3, 0)
    logs = serving_logs.logs_root(str(repository), MODEL_NAME)
    labeled, unlabeled, report = span_from_logs.joined_rows(logs)
    assert sorted((p["request_id"], label) for p, _, label in labeled) == [
        ("done", 1), ("mid", 0), ("unsure", 0), ("unsure", 1)]
    assert [p["request_id"] for p, _, _ in unlabeled] == ["sure"]
    # Importing the same export again: first answer stands, nothing appended.
    again = labels_io.import_labels(str(export), str(repository), MODEL_NAME, now=T0 + 200)
    assert again["requests"] == 0 and again["already_labeled"] == 2


def test_csv_round_trip_and_partial_requests(tmp_path, repository):
    out = tmp_path / "labels"
    labels_io.export(str(repository), MODEL_NAME, str(out), limit=2)
    with open(out / labels_io.CSV_FILE) as f:
        lines = list(csv.DictReader(f))
    assert [(r["request_id"], r["row"]) for r in lines] == [("unsure", "0"), ("unsure", "1")]
    filled = tmp_path / "filled.csv"
    filled.write_text("request_id,label,row\nunsure,1,1\nsure,0,\n")
    result = labels_io.import_labels(str(filled), str(repository), MODEL_NAME)
    assert (result["requests"], result["incomplete_requests"]) == (1, 1)   # "unsure" row 0 still open
    labeled, _, _ = span_from_logs.joined_rows(serving_logs.logs_root(str(repository), MODEL_NAME))
    assert ("sure", 0) in [(p["request_id"], label) for p, _, label in labeled]


@pytest.mark.parametrize("body, message", [
    ("request_id,label\nmid,yes\n", "line 2.*label 'yes' is not one of the model's labels \\[0, 1\\]"),
    ("request_id,label\nnobody,1\n", "1 label\\(s\\) for requests not in the prediction log.*request nobody"),
    ("request_id,label,row\nmid,1,3\n", "row 3 is not a row of request mid"),
    ("request,label\nmid,1\n", "missing column\\(s\\) \\['request_id'\\]"),
    ("request_id,label\nmid,1\nmid,1\n", "labeled twice|row 1 is not a row of request mid"),
])
def test_bad_labels_are_refused_and_nothing_is_appended(tmp_path, repository, body, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(body)
    logs = serving_logs.logs_root(str(repository), MODEL_NAME)
    before = serving_logs.read_all(logs, serving_logs.FEEDBACK_DIR)
    with pytest.raises(DataError, match=message):
        labels_io.import_labels(str(bad), str(repository), MODEL_NAME)
    assert serving_logs.read_all(logs, serving_logs.FEEDBACK_DIR) == before


def test_label_studio_export_with_a_bad_choice_names_the_task(tmp_path, repository):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([{"id": 7, "data": {"request_id": "mid", "row": 0}, "annotations": [
        {"id": 1, "result": [{"from_name": "label", "to_name": "row", "type": "choices", "value": {"choices": ["maybe"]}}]}]}]))
    with pytest.raises(DataError, match="task 7.*label 'maybe'"):
        labels_io.import_labels(str(export), str(repository), MODEL_NAME)
    export.write_text("{not json")
    with pytest.raises(DataError, match="not JSON"):
        labels_io.import_labels(str(export), str(repository), MODEL_NAME)


def test_regression_labels_must_be_finite_numbers():
    domain = labels_io.Domain({"task": "regression"})
    assert domain.parse("3.5", "f line 2") == 3.5
    for bad in ("nan", "inf", "x", True):
        with pytest.raises(DataError, match="not a finite number"):
            domain.parse(bad, "f line 2")


def test_cli_import_reports_and_fails_cleanly(tmp_path, repository):
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,label\nmid,7\n")
    result = subprocess.run([sys.executable, "-m", "pipelines.labels_io", "import", "--file", str(bad),
                             "--model-repository", str(repository), "--model-name", MODEL_NAME],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "label '7' is not one of the model's labels" in result.stderr
