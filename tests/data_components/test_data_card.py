"""A data card for every data version: written by validate beside its report, pushed with the
version, built from the data's own statistics and the user's notes next to the file."""
from __future__ import annotations

import pytest

from flywheel import bundle, model_repository, names, params
from flywheel.params import Shift
from pipelines import chain
from tests.support.spans import span, write_span


def _settings(tmp_path) -> params.Params:
    return params.override(params.load(), {"push.model_repository": str(tmp_path / "repo"), "train.epochs": 2, "train.min_steps": 0})


def test_the_card_describes_the_data_and_travels_with_the_version(tmp_path):
    data = write_span(tmp_path, span(1, rows=2000), "span-001.csv")
    (tmp_path / "span-001.card.yaml").write_text("description: One week of taxi trips.\n"
                                                  "limitations:\n  - Generated, not real rides.\n")
    run = chain.run(str(data), tmp_path / "run", _settings(tmp_path), skip=("infra_validate",))
    assert run.results["push"].pushed, run.results["evaluate"].reason
    card = (run.anomalies / names.DATA_CARD).read_text()
    assert "One week of taxi trips." in card and "- Generated, not real rides." in card
    assert "time range (trip_start_timestamp): 2026-01-05 to 2026-01-11" in card
    assert "| payment_type | categorical | input |" in card and "| big_tipper | categorical | label |" in card
    assert "Columns rider_email were dropped" in card and run.results["ingest"]["data_version"] in card
    page = (run.anomalies / "data_card.html").read_text()
    assert page.startswith("<!doctype html>") and "http" not in page.replace("charset", "")
    pushed = model_repository.version_dir(str(tmp_path / "repo"), names.DEFAULT_MODEL_NAME, 1)
    assert open(bundle.path(pushed, names.DATA_CARD)).read() == card


def test_drift_against_the_previous_version_is_on_the_card(tmp_path):
    first = chain.run(str(write_span(tmp_path, span(1, rows=2000), "a.csv")), tmp_path / "a", _settings(tmp_path),
                      skip=("infra_validate",))   # not what this test is about: a model server start saved
    assert first.results["push"].pushed
    shifted = span(2, (Shift(2, "covariate", "trip_miles", 1.0),), rows=2000)
    run = chain.run(str(write_span(tmp_path, shifted, "b.csv")), tmp_path / "b", _settings(tmp_path), until="validate")
    card = (run.anomalies / names.DATA_CARD).read_text()
    drift_section = card.split("## Drift against the production model's data")[1].split("##")[0]
    assert "trip_miles" in drift_section and "changed" in drift_section


@pytest.mark.parametrize("notes", ["limitations: [unclosed", "- just a list\n- of things\n"])
def test_unreadable_notes_do_not_stop_the_run(tmp_path, notes):
    data = write_span(tmp_path, span(1, rows=1000), "s.csv")
    (tmp_path / "s.card.yaml").write_text(notes)
    run = chain.run(str(data), tmp_path / "run", _settings(tmp_path), until="validate")
    assert "could not be read" in (run.anomalies / names.DATA_CARD).read_text() or \
        "are not a mapping" in (run.anomalies / names.DATA_CARD).read_text()
