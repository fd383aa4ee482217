"""The whole DAG run locally with kfp.local on small generated spans, as `make run` runs it."""
import glob
import json
import os

import pytest

from flywheel import bundle, names, params
from flywheel import model_repository as repo
from flywheel.params import DataParams, IngestParams, Shift
from tools import datagen
from pipelines import runner
from pipelines.summary import describe
from pipelines.training_pipeline import arguments as pipeline_arguments

ROWS = 2000
pytestmark = pytest.mark.slow


def _arguments(spans_dir, tmp_path, span, **run_arguments):
    settings = params.override(params.load(), {"train.epochs": 4, "train.min_steps": 0, "push.model_repository": str(tmp_path / "models")})
    return pipeline_arguments(settings, os.path.join(spans_dir, datagen.span_file(span)), **run_arguments)


def null_metadata(root: str) -> list[str]:
    """Output artifacts' top-level metadata values that are null, in every task's executor output:
    KFP's launcher records each as an ML Metadata property and fails the task on a null one."""
    found = []
    for path in glob.glob(os.path.join(root, "**", "executor_output.json"), recursive=True):
        with open(path) as f:
            output = json.load(f)
        for name, group in output.get("artifacts", {}).items():
            for artifact in group.get("artifacts", []):
                found += [f"{path}: {name}.{key}" for key, value in artifact.get("metadata", {}).items()
                          if value is None]
    return found


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spans")
    shifts = (Shift(span=2, kind="schema_skew", feature="fare", magnitude=1.0),)
    datagen.write_spans(DataParams(rows_per_span=ROWS, spans=2, shifts=shifts), directory, IngestParams())
    return str(directory)


def test_first_run_pushes_version_1_and_a_rerun_on_the_same_data_pushes_nothing(spans, tmp_path):
    root = str(tmp_path / "root")
    first = runner.run_local(_arguments(spans, tmp_path, 1), root)
    assert first.succeeded, first.error
    assert first.data_version.startswith("md5:") and first.anomalies_blocking == 0
    assert first.blessed and first.pushed and first.pushed_version == 1
    assert first.metrics["auc"] > 0.7
    assert repo.versions(str(tmp_path / "models"), "taxi_tips") == [1]
    # No production version and nothing compared with: still no null for KFP's launcher to refuse.
    assert glob.glob(os.path.join(root, "**", "executor_output.json"), recursive=True)
    assert null_metadata(root) == []

    again = runner.run_local(_arguments(spans, tmp_path, 1), root)
    assert again.succeeded, again.error
    assert again.pushed is False and "same data" in again.push_reason
    assert repo.versions(str(tmp_path / "models"), "taxi_tips") == [1]
    # The rerun was evaluated against production (version 1) on the same test split.
    assert "production" in again.blessing_reason


def test_blocking_anomalies_stop_the_run_before_training(spans, tmp_path):
    summary = runner.run_local(_arguments(spans, tmp_path, 2), str(tmp_path / "root"))
    assert not summary.succeeded and summary.failed_step == "validate"
    assert "DataError" in summary.error and "fare" in summary.error  # the cause, in the summary
    assert summary.anomalies_blocking >= 1 and "train/model" not in summary.artifacts
    assert repo.versions(str(tmp_path / "models"), "taxi_tips") == []
    # The HTML report was written before validate failed, and the run's summary names it.
    report = os.path.join(summary.artifacts["validate/anomalies"], names.REPORT_HTML)
    assert "fare" in open(report).read()
    assert f"validation report: {report}" in describe([summary], [], str(tmp_path / "models"), "taxi_tips")


def test_a_users_csv_with_a_string_label_and_no_curated_schema(tmp_path, capsys):
    """`make run DATA=file.csv LABEL=col`: any CSV with a header; the schema is inferred."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 1500
    frame = pd.DataFrame({"sepal length": rng.normal(5, 1, n).round(2),
                          "colour": rng.choice(["red", "green", "blue"], n), "petals": rng.integers(0, 9, n)})
    frame["species"] = np.where(frame["sepal length"] + (frame["colour"] == "red") + rng.normal(0, .5, n) > 5.5,
                                "setosa", "virginica")
    data = tmp_path / "flowers.csv"
    frame.to_csv(data, index=False)
    settings = params.override(params.load(), {
        "train.epochs": 4, "train.min_steps": 0, "ingest.label": "species", "push.model_name": "flowers", "schema.curated": "",
        "ingest.pii_columns": [], "evaluate.slice_features": ["colour"], "evaluate.slice_crosses": [], "push.model_repository": str(tmp_path / "models")})
    summary = runner.run_local(pipeline_arguments(settings, str(data)), str(tmp_path / "root"))
    assert summary.succeeded, summary.error
    assert summary.pushed_version == 1 and summary.metrics["auc"] > 0.8
    metadata = bundle.read_metadata(repo.version_dir(str(tmp_path / "models"), "flowers", 1))
    assert metadata["signature_keys"]["sepal length"] == "sepal_length"  # the column's serving-signature key
    record = bundle.path(repo.version_dir(str(tmp_path / "models"), "flowers", 1), names.RUN_RECORD)
    assert summary.run_id and summary.run_id in open(record).read()

    # Lineage: the served version back to its data, settings and what started the run.
    from pipelines import lineage
    assert lineage.main(["--model-repository", str(tmp_path / "models"), "--model-name", "flowers",
                         "--picture", str(tmp_path / "lineage.png")]) == 0
    shown = capsys.readouterr().out
    assert f"v1 (served): pushed by run {summary.run_id}" in shown and str(data) in shown
    assert '"label": "species"' in shown and summary.data_version in shown
    assert (tmp_path / "lineage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_exits_non_zero_and_names_the_missing_file(tmp_path, capsys):
    from pipelines import cli

    missing = tmp_path / "no-such-file.csv"
    code = cli.main(["run", "--data", str(missing), "--label", "y", "--pipeline-root", str(tmp_path / "root"),
                     "--model-repository", str(tmp_path / "models")])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED at ingest" in out and "DataError" in out and str(missing) in out
    assert not (tmp_path / "models").exists()
    assert out.count("\n") < 30, out   # one line per task and the summary; the rest is in the log file
