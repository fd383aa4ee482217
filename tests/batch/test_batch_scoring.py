"""Batch scoring (components/batch_score.py, `make batch`) on a version trained and pushed by the
pipeline's own steps (tests/conftest.py): one prediction per good row equal to the model's, the bad
rows listed, drift of a shifted table reported, clear errors and nothing written on bad input,
the compiled batch pipeline current. Cost: about 40 s with the session's versions already trained
(each run imports TensorFlow's model and TFDV once; the tables are a few thousand rows)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from components import batch_score, model_inputs
from flywheel import batch_runs, names, params
from flywheel.errors import DataError
from pipelines import batch_cli, remote
from tests.support.servers import MODEL_NAME, push_version
from tests.support.taxi_rows import make_frame

KEY = "trip_id"


def keyed(frame: pd.DataFrame, prefix: str = "t") -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, KEY, [f"{prefix}{i:06d}" for i in range(len(frame))])
    return frame


@pytest.fixture
def repository(tmp_path, exported_versions) -> Path:
    repository = tmp_path / "model_repository"
    push_version(exported_versions, repository, 1)
    return repository


def settings(repository: Path, **batch) -> params.Params:
    values = {"push.model_repository": str(repository), "push.model_name": MODEL_NAME,
              **{f"batch.{k}": v for k, v in batch.items()}}
    return params.override(params.load(), values)


def test_every_row_scored_as_the_model_scores_it_with_drift_reported(tmp_path, repository):
    # A shifted table (longer trips, more cash), in two CSV shards, with the label still in it.
    frame = keyed(make_frame(4000, seed=5, miles_scale=1.6, cash_share=0.55))
    shards = tmp_path / "input"
    shards.mkdir()
    frame.iloc[:2500].to_csv(shards / "a.csv", index=False)
    frame.iloc[2500:].to_csv(shards / "b.csv", index=False)

    chosen = settings(repository, key_column=KEY, batch_rows=1000, shard_rows=1500)
    summary, run_dir = batch_cli.run_inprocess(str(shards), chosen, 1)
    run_dir = Path(run_dir)

    predictions = pq.read_table(run_dir / names.BATCH_PREDICTIONS_DIR).to_pandas()
    assert len(list((run_dir / names.BATCH_PREDICTIONS_DIR).glob("data-*-of-00003.parquet"))) == 3
    assert len(predictions) == len(frame) == summary["rows_scored"] == summary["rows_read"]
    assert list(predictions[names.KEY_COLUMN]) == list(frame[KEY])
    assert list(predictions[names.ROW_COLUMN]) == list(range(len(frame)))
    assert set(predictions[names.VERSION_COLUMN]) == {1} and set(predictions[names.MODEL_COLUMN]) == {MODEL_NAME}
    # The same rows through serving_default in one call, as evaluate scores them.
    expected, _ = model_inputs.predict(str(repository / MODEL_NAME / "1"), frame)
    np.testing.assert_allclose(predictions[names.OUTPUT_SCORE].to_numpy(),
                               expected[names.OUTPUT_SCORE].reshape(-1), atol=1e-6)

    # The shifted features are reported as drift against the version's training data.
    assert {"trip_miles", "payment_type"} <= set(summary["drifted"])
    report = json.loads((run_dir / names.ANOMALY_REPORT).read_text())
    drifted = {a["feature"] for a in report if a["kind"] == names.DRIFT}
    assert drifted == set(summary["drifted"]) and all(not a["blocking"] for a in report)
    measurements = json.loads((run_dir / names.MEASUREMENTS_FILE).read_text())[names.DRIFT]
    assert {m["feature"] for m in measurements} >= {"fare", "company", "pickup_area"}
    page = (run_dir / names.REPORT_HTML).read_text()
    assert "Batch scoring report" in page and "trip_miles" in page

    # The lineage record names the data, the version and the code; LATEST.json points at the run.
    record = json.loads((run_dir / names.RUN_RECORD).read_text())
    assert record["kind"] == "batch" and record["model"]["version"] == 1
    assert record["data"]["data_version"].startswith("md5:") and record["code"]["git_sha"]
    assert record["params"]["batch"]["key_column"] == KEY
    latest = batch_runs.read_latest(batch_runs.root(str(repository), MODEL_NAME))
    assert latest["run"] == run_dir.name and latest["lookup"] and latest["version"] == 1
    assert summary["lookup_keys"] == len(frame) and summary["duplicate_keys"] == 0


def test_bad_rows_are_listed_and_left_out_below_the_threshold(tmp_path, repository):
    frame = keyed(make_frame(1000, seed=6)).astype({"fare": object, "trip_seconds": object})
    frame.loc[10, "fare"] = "twelve"             # text in a numeric feature
    frame.loc[20, "trip_seconds"] = -5           # below the schema's int_domain min
    frame.loc[30, KEY] = None                    # no key
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    schema = (repository / MODEL_NAME / "1" / names.EXTRA_DIR / names.BASELINE_SCHEMA).read_text()
    assert "trip_seconds" in schema

    summary, run_dir = batch_cli.run_inprocess(str(data), settings(repository, key_column=KEY, max_bad_share=0.01), 1)
    bad = pq.read_table(Path(run_dir) / names.BAD_ROWS_FILE).to_pandas()
    listed = {(r.row, r.column) for r in bad.itertuples()}
    assert (10, "fare") in listed and (30, KEY) in listed
    assert bad.set_index("row").loc[10, "value"] == "twelve"
    scored = pq.read_table(Path(run_dir) / names.BATCH_PREDICTIONS_DIR).to_pandas()
    assert summary["bad_rows"] == len({r for r, _ in listed}) and len(scored) == 1000 - summary["bad_rows"]
    assert not {10, 30} & set(scored[names.ROW_COLUMN])
    report = json.loads((Path(run_dir) / names.ANOMALY_REPORT).read_text())
    assert any(a["kind"] == "bad_rows" and a["feature"] == "fare" for a in report)


def test_too_many_bad_rows_fail_naming_the_column_and_write_nothing(tmp_path, repository):
    frame = make_frame(500, seed=7).astype({"fare": object})
    frame.loc[frame.index[:50], "fare"] = "n/a-ish"
    data = tmp_path / "worse.csv"
    frame.to_csv(data, index=False)
    root = batch_runs.root(str(repository), MODEL_NAME)
    with pytest.raises(DataError) as failure:
        batch_cli.run_inprocess(str(data), settings(repository, max_bad_share=0.05), 1)
    message = str(failure.value)
    assert "column 'fare'" in message and "50 of 500 rows" in message and "'n/a-ish'" in message
    assert not Path(root).exists() or not any(p for p in Path(root).iterdir()), "a failed run left output"


@pytest.mark.parametrize("problem", ["missing file", "missing column", "missing key column", "empty"])
def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path, repository, problem):
    data = tmp_path / "input.csv"
    frame = make_frame(200, seed=8)
    if problem == "missing column":
        frame = frame.drop(columns=["fare"])
    if problem == "empty":   # a header and no rows
        frame = frame.iloc[:0]
    if problem != "missing file":
        frame.to_csv(data, index=False)
    key = KEY if problem == "missing key column" else ""
    out = tmp_path / "out"
    with pytest.raises(DataError) as failure:
        batch_score.run(str(data), str(repository / MODEL_NAME / "1"), out, MODEL_NAME, 1,
                        params.BatchParams(key_column=key))
    message = str(failure.value)
    assert str(data) in message
    expected = {"missing file": "does not exist", "missing column": "column 'fare'",
                "missing key column": f"column '{KEY}'", "empty": "Empty CSV file"}[problem]
    assert expected in message
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_cli_exit_status_and_summary(tmp_path, repository, capsys):
    data = tmp_path / "span.csv"
    make_frame(300, seed=9).to_csv(data, index=False)
    args = ["--model-repository", str(repository), "--model-name", MODEL_NAME]
    assert batch_cli.main([str(data), *args]) == 0
    out = capsys.readouterr().out
    assert "scored 300 of 300 rows with taxi_tips version 1" in out and "report:" in out
    assert batch_cli.main([str(tmp_path / "absent.csv"), *args]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert batch_cli.main([str(data), *args, "--version", "7"]) == 2
    assert "no version 7" in capsys.readouterr().err


def test_committed_batch_yaml_is_current_and_carries_params_yaml(tmp_path):
    from pipelines.batch_pipeline import SECTIONS, arguments, batch_pipeline
    fresh = remote.compile_pipeline(str(tmp_path / "batch.yaml"), pipeline=batch_pipeline)
    assert Path(fresh).read_text() == Path(remote.BATCH_YAML).read_text(), \
        "pipelines/batch_pipeline.yaml is stale: run `make compile` and commit it"
    spec = next(yaml.safe_load_all(Path(remote.BATCH_YAML).read_text()))
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    expected = arguments(params.load())
    for section in SECTIONS:   # KFP keeps every number of a dict parameter as a float
        assert defaults[section]["defaultValue"] == json.loads(json.dumps(expected[section]), parse_int=float), section
    assert set(spec["root"]["dag"]["tasks"]) == {"batch-score-component"}


@pytest.mark.slow
def test_the_compiled_dag_runs_with_kfp_local_and_publishes(tmp_path, repository):
    """The batch pipeline through kfp.local (a task in its own process, as on a cluster). Cost:
    about 60 s (the task imports TensorFlow and TFDV)."""
    data = tmp_path / "keyed.csv"
    keyed(make_frame(400, seed=12)).to_csv(data, index=False)
    code = batch_cli.main([str(data), "--model-repository", str(repository), "--model-name", MODEL_NAME,
                           "--runner", "subprocess", "--pipeline-root", str(tmp_path / "root"),
                           "--set", f"batch.key_column={KEY}"])
    assert code == 0
    latest = batch_runs.read_latest(batch_runs.root(str(repository), MODEL_NAME))
    run_dir = Path(batch_runs.run_dir(batch_runs.root(str(repository), MODEL_NAME), latest["run"]))
    predictions = pq.read_table(run_dir / names.BATCH_PREDICTIONS_DIR).to_pandas()
    assert len(predictions) == 400 and latest["lookup"] and latest["version"] == 1
    record = json.loads((run_dir / names.RUN_RECORD).read_text())
    assert record["run_id"] and record["trigger"]["command"] == f"batch {data}"
