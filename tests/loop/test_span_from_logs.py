"""`make span`: prediction logs joined with feedback into a labeled span, on real log files and a
real DVC repository."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flywheel.errors import DataError
from pipelines import span_from_logs
from tests.support.log_files import prediction, write_feedback, write_segment

DAY = 86400.0
T0 = 1_767_600_000.0   # 2026-01-05 08:00 UTC


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"trip_miles": float(start + i), "payment_type": "Cash" if i % 2 else "Credit Card",
             "rider_email": f"r{i}@example.com", "company": None} for i in range(n)]


@pytest.fixture
def logs(tmp_path) -> Path:
    """Three requests on day 1 (one answered twice, one never), one on day 2, feedback for a
    request never logged, a torn line and a malformed record."""
    root = tmp_path / "logs"
    write_segment(str(root), [prediction("a", rows(2), [0.9, 0.2], T0), prediction("b", rows(3, 10), [0.6] * 3, T0 + 1),
                              prediction("c", rows(1, 20), [0.1], T0 + 2),
                              {"format": 1, "kind": "prediction", "time": T0 + 3, "request_id": "d", "status": 200,
                               "features": "oops"},
                              {**prediction("e", [], [], T0 + 3), "status": 400, "features": None}],
                  seq=1, torn=b'{"format":1,"kind":"predic')
    write_segment(str(root), [prediction("f", rows(2, 30), [0.7, 0.3], T0 + DAY)], seq=2)
    write_feedback(str(root), [("a", [1, 0]), ("b", [1, 1, 0]), ("zzz", [1])], T0 + 10)
    write_feedback(str(root), [("a", [0, 0]), ("f", [0, 1])], T0 + DAY + 10, instance="pod-c-1")
    return root


def test_span_joins_dedups_counts_and_redacts(tmp_path, logs):
    report = span_from_logs.build("unused", "taxi_tips", str(tmp_path / "spans"), label="big_tipper",
                                  pii_fields=("rider_email",), pii_patterns=(), logs=str(logs), add_to_dvc=False,
                                  now=T0 + 2 * DAY)
    assert (report.predictions, report.rows, report.labeled_rows, report.unlabeled_rows) == (4, 8, 7, 1)
    assert (report.duplicate_feedback, report.unjoinable_feedback, report.rejected_requests) == (1, 1, 1)
    assert report.torn_lines == 1 and report.malformed == 1
    assert "record 4: features is not a list of objects" in report.malformed_examples[0]
    frame = pd.read_csv(report.path)
    assert list(frame.columns) == ["trip_miles", "payment_type", "rider_email", "company", "big_tipper"]
    assert frame["big_tipper"].tolist() == [1, 0, 1, 1, 0, 0, 1]     # "a" keeps its first answer
    assert set(frame["rider_email"]) == {"[REDACTED]"} and frame["company"].isna().all()
    text = "\n".join(report.lines())
    assert "labeled rows 7, unlabeled rows 1" in text and "duplicate 1" in text


def test_date_range_selects_prediction_segments(tmp_path, logs):
    report = span_from_logs.build("unused", "taxi_tips", str(tmp_path / "spans"), since="2026-01-06", label="big_tipper",
                                  logs=str(logs), add_to_dvc=False)
    assert (report.predictions, report.labeled_rows) == (1, 2)
    with pytest.raises(DataError, match="no prediction log segments from 2027-01-01"):
        span_from_logs.build("unused", "taxi_tips", str(tmp_path / "spans"), since="2027-01-01", label="big_tipper",
                             logs=str(logs), add_to_dvc=False)


def test_too_few_labeled_rows_is_an_error_and_writes_nothing(tmp_path, logs):
    out = tmp_path / "spans"
    with pytest.raises(DataError, match="7 labeled row\\(s\\).*fewer than the 100 needed.*1 row\\(s\\) have no feedback"):
        span_from_logs.build("unused", "taxi_tips", str(out), label="big_tipper", logs=str(logs), min_rows=100,
                             add_to_dvc=False)
    assert not out.exists() or not list(out.iterdir())


def test_no_model_and_no_label_names_the_model_directory(tmp_path, logs):
    with pytest.raises(DataError, match="no pushed version"):
        span_from_logs.build(str(tmp_path / "repo"), "taxi_tips", str(tmp_path / "spans"), logs=str(logs))


def test_cli_adds_the_span_to_dvc_and_the_pipeline_ingests_it(tmp_path, logs):
    """`python -m pipelines.span_from_logs` in a real git + DVC repository: the span is `dvc add`ed
    (the loop test trains on such a span)."""
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    shutil.copytree(logs, project / "logs")
    out = project / "data" / "log_spans"
    result = subprocess.run([sys.executable, "-m", "pipelines.span_from_logs", "--logs", str(project / "logs"),
                             "--label", "big_tipper", "--output-dir", str(out)], capture_output=True, text=True,
                            cwd=Path(span_from_logs.__file__).parents[1])
    assert result.returncode == 0, result.stderr
    assert "labeled rows 7, unlabeled rows 1" in result.stdout and "make run DATA=" in result.stdout
    [span] = list(out.glob("span-logs-*.csv"))
    dvc_file = Path(str(span) + ".dvc")
    assert dvc_file.exists() and "md5:" in dvc_file.read_text()
    import hashlib
    assert f"md5: {hashlib.md5(span.read_bytes()).hexdigest()}" in dvc_file.read_text()
    assert span.name in (out / ".gitignore").read_text()   # DVC keeps the data out of git
    with open(span) as f:
        assert next(csv.reader(f))[-1] == "big_tipper"


def test_cli_bad_dates_and_missing_logs_exit_non_zero(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "pipelines.span_from_logs", "--since", "2026-13-40"],
                         capture_output=True, text=True, cwd=Path(span_from_logs.__file__).parents[1])
    assert bad.returncode == 2 and "SINCE='2026-13-40' is not a date" in bad.stderr
    empty = subprocess.run([sys.executable, "-m", "pipelines.span_from_logs", "--logs", str(tmp_path / "none"),
                            "--label", "y", "--no-dvc"], capture_output=True, text=True,
                           cwd=Path(span_from_logs.__file__).parents[1])
    assert empty.returncode == 1 and "no prediction log segments" in empty.stderr
