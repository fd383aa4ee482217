"""Schema evolution: a span where a new payment type appears and a column is gone is blocked by the
curated schema; `make schema-update` proposes the changes, accepts them as reviewed, versions the
schema and records the change; the next run validates, trains and pushes with the new schema."""
from __future__ import annotations

import json
import shutil

import pytest

from flywheel import bundle, model_repository, names, params, schema_changes, schema_view
from flywheel.errors import DataError
from flywheel.params import DataParams, Shift
from pipelines import chain, schema_update
from tests.support.spans import CURATED, LABEL, span, write_span

SCHEMA_SKEW = (Shift(2, "new_value", "payment_type", 0.1), Shift(2, "schema_skew", "company", 1.0))


@pytest.fixture
def curated(tmp_path):
    path = tmp_path / "curated" / "schema.pbtxt"
    path.parent.mkdir()
    shutil.copy(CURATED, path)
    return path


def _settings(repository) -> params.Params:
    # Two epochs on a few thousand rows: what is under test is that the run trains and pushes on
    # the updated schema, not the model's quality per slice, so the fairness gates are open.
    return params.override(params.load(), {"push.model_repository": str(repository), "train.epochs": 2, "train.min_steps": 0,
                                            "evaluate.max_slice_gap": 1.0, "evaluate.min_slice_auc": 0.0})


def test_new_value_and_removed_column_are_accepted_and_the_next_run_pushes(tmp_path, curated, capsys):
    data = write_span(tmp_path, span(2, SCHEMA_SKEW, rows=2000), "span-002.csv")
    with pytest.raises(DataError, match="company"):
        chain.run(str(data), tmp_path / "before", _settings(tmp_path / "repo"), until="validate",
                  curated_schema=str(curated))

    # Review only: proposals printed, nothing written, exit 1 (changes are waiting).
    assert schema_update.main([str(data), "--schema", str(curated), "--out", str(tmp_path / "review")]) == 1
    shown = capsys.readouterr().out
    assert "company" in shown and "deprecate" in shown and "values added: ['Crypto']" in shown
    assert schema_changes.version(schema_view.load(curated)) == 1
    assert not schema_changes.changelog_path(curated).exists()

    assert schema_update.main([str(data), "--schema", str(curated), "--accept", "payment_type,company",
                               "--out", str(tmp_path / "accept")]) == 0
    updated = schema_view.load(curated)
    assert schema_changes.version(updated) == 2
    assert "Crypto" in schema_view.by_name(updated, names.ENV_TRAINING)["payment_type"].values
    assert "company" not in schema_view.by_name(updated, names.ENV_TRAINING)          # deprecated: not an input
    assert any(f.name == "company" for f in updated.feature)                          # but still in the schema
    log = [json.loads(line) for line in schema_changes.changelog_path(curated).read_text().splitlines()]
    assert {(e["feature"], e["action"]) for e in log} == {("company", "deprecate"), ("payment_type", "update")}
    assert all(e["schema_version"] == 2 and e["data_version"].startswith("md5:") and e["by"] for e in log)

    # The next run trains without the retired column and pushes; the version records the schema's.
    run = chain.run(str(data), tmp_path / "after", _settings(tmp_path / "repo"), curated_schema=str(curated))
    assert run.results["push"].pushed, run.results["push"].reason
    version_dir = model_repository.version_dir(str(tmp_path / "repo"), names.DEFAULT_MODEL_NAME, 1)
    metadata = bundle.read_metadata(version_dir)
    assert metadata["schema_version"] == 2 and "company" not in metadata["features"]


def test_a_type_change_is_applied_only_when_named(tmp_path, curated, capsys):
    data = write_span(tmp_path, span(2, (Shift(2, "schema_skew", "fare", 0.3),), rows=1500), "span.csv")
    assert schema_update.main([str(data), "--schema", str(curated), "--accept", "all",
                               "--out", str(tmp_path / "all")]) == 1
    out = capsys.readouterr().out
    assert "could hide a data error: its type changes from FLOAT to BYTES" in out
    assert schema_changes.version(schema_view.load(curated)) == 1          # nothing written
    assert schema_update.main([str(data), "--schema", str(curated), "--accept", "fare",
                               "--out", str(tmp_path / "named")]) == 0
    assert schema_changes.version(schema_view.load(curated)) == 2


def test_a_deprecated_feature_coming_back_is_a_reviewed_change(tmp_path, curated):
    gone = write_span(tmp_path, span(2, (Shift(2, "schema_skew", "company", 1.0),), rows=1500), "gone.csv")
    assert schema_update.main([str(gone), "--schema", str(curated), "--accept", "all",
                               "--out", str(tmp_path / "gone")]) == 0
    back = write_span(tmp_path, span(3, rows=1500), "back.csv")
    changes, _ = schema_update.review(str(back), LABEL, curated, tmp_path / "back")
    assert [(c.feature, c.action) for c in changes] == [("company", schema_changes.REINSTATE)]
    assert schema_update.main([str(back), "--schema", str(curated), "--accept", "company",
                               "--out", str(tmp_path / "reinstate")]) == 0
    assert "company" in schema_view.by_name(schema_view.load(curated), names.ENV_TRAINING)
    assert schema_changes.version(schema_view.load(curated)) == 3


def test_data_params_accept_the_new_value_shift():
    df = span(2, (Shift(2, "new_value", "payment_type", 0.2),), rows=1000)
    assert 0.1 < (df["payment_type"] == "Crypto").mean() < 0.3
    with pytest.raises(ValueError, match="cannot apply"):
        span(2, (Shift(2, "new_value", "fare", 0.2),), rows=100)
    assert DataParams().shifts   # the default data carries a drifted span
