"""Each generator knob produces the anomaly, drift or skew TFDV should find (known truth).

Span 1 is the clean baseline (its train statistics play the production model's baseline);
span 2 carries the shift. The unshifted case is in test_tfdv_steps.py (no anomalies)."""
import json

import pytest

from flywheel import names
from flywheel.errors import DataError
from flywheel.params import Shift

from tests.support.spans import LABEL, SETTINGS, span, write_span


def _report(steps, clean_stats, shift: Shift, tmp_path, schema_from_previous=False) -> tuple[list[dict], str]:
    current = steps.prepare(write_span(tmp_path, span(2, (shift,))), "shifted")
    try:
        steps.validate(current, baseline=clean_stats[0], schema_from=clean_stats[0] if schema_from_previous else None)
        error = ""
    except DataError as raised:
        error = str(raised)
    return json.loads((steps.root / "anomalies" / names.ANOMALY_REPORT).read_text()), error


def _found(report, feature, kind):
    return [a for a in report if a["feature"] == feature and a["kind"] == kind]


@pytest.mark.parametrize("shift, feature, anomaly", [
    (Shift(2, "covariate", "fare", 1.0), "fare", "drift_wasserstein_sd"),
    (Shift(2, "covariate", "trip_seconds", 1.0), "trip_seconds", "drift_wasserstein_sd"),
    (Shift(2, "covariate", "payment_type", 0.3), "payment_type", "drift_linf"),
    (Shift(2, "covariate", "pickup_area", 0.3), "pickup_area", "drift_linf"),
    (Shift(2, "concept", "payment_type", 1.0), LABEL, "drift_linf"),
])
def test_drift_knobs_are_reported_not_blocking(steps, clean_stats, tmp_path, shift, feature, anomaly):
    report, error = _report(steps, clean_stats, shift, tmp_path)
    found = _found(report, feature, "drift")
    assert [a["anomaly"] for a in found] == [anomaly], report
    assert found[0]["p_corrected"] <= SETTINGS.drift.alpha and not found[0]["blocking"]
    assert found[0]["value"] >= found[0]["threshold"] or found[0]["psi"] >= SETTINGS.drift.psi
    assert error == "" and not any(a["blocking"] for a in report)


@pytest.mark.parametrize("shift, feature, anomalies", [
    (Shift(2, "schema_skew", "trip_miles", 1.0), "trip_miles", {"SCHEMA_MISSING_COLUMN"}),
    (Shift(2, "schema_skew", "trip_seconds", 0.3), "trip_seconds", {"UNEXPECTED_DATA_TYPE"}),
    (Shift(2, "schema_skew", "payment_type", 0.5), "payment_type", {"UNEXPECTED_DATA_TYPE"}),
])
def test_schema_skew_knob_blocks(steps, clean_stats, tmp_path, shift, feature, anomalies):
    report, error = _report(steps, clean_stats, shift, tmp_path)
    found = _found(report, feature, "schema")
    assert anomalies <= {a["anomaly"] for a in found}, report
    assert all(a["blocking"] for a in found) and {a["split"] for a in found} == set(names.SPLITS)
    assert f"feature '{feature}'" in error and "shifted" in error


@pytest.mark.parametrize("shift, feature, measure", [
    (Shift(2, "feature_skew", "fare", 1.0), "fare", "skew_wasserstein_sd"),
    (Shift(2, "feature_skew", "trip_seconds", 2.0), "trip_seconds", "skew_wasserstein_sd"),
])
def test_feature_skew_knob_blocks_as_train_eval_skew(steps, clean_stats, tmp_path, shift, feature, measure):
    report, error = _report(steps, clean_stats, shift, tmp_path)
    found = _found(report, feature, "skew")
    assert [a["anomaly"] for a in found] == [measure] and found[0]["blocking"], report
    assert not _found(report, feature, "drift")          # train itself did not move
    assert f"feature '{feature}'" in error and "eval split" in error


def test_feature_skew_on_a_categorical_leaves_the_domain_in_eval_only(steps, clean_stats, tmp_path):
    report, error = _report(steps, clean_stats, Shift(2, "feature_skew", "company", 1.0), tmp_path)
    schema_found = _found(report, "company", "schema")
    assert {a["split"] for a in schema_found} == {names.EVAL}
    assert schema_found[0]["anomaly"] == "ENUM_TYPE_UNEXPECTED_STRING_VALUES"
    assert [a["anomaly"] for a in _found(report, "company", "skew")] == ["skew_linf"]
    assert "feature 'company'" in error
