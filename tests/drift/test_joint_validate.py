"""Joint drift through the real steps: statistics writes the joint reference beside the profiles,
validate reports a change the per-feature rule cannot see, in report.json, measurements.json and
the HTML page."""
import json

from components import schema, validate
from flywheel import artifacts, bundle, names
from pipelines import chain
from tests.support.spans import CURATED, LABEL, SETTINGS, span, write_span
from tests.support.taxi_rows import fares_reversed


def test_validate_reports_joint_drift_the_per_feature_rule_cannot_see(tmp_path):
    reference = chain.run(str(write_span(tmp_path / "a", span(1, rows=3000))), tmp_path / "ref", SETTINGS,
                          until="statistics").statistics
    current = chain.run(str(write_span(tmp_path / "b", fares_reversed(span(2, rows=3000)))), tmp_path / "cur", SETTINGS,
                        until="statistics").statistics
    profiles_file = str(artifacts.profiles_file(reference, names.TRAIN))
    joint_reference = bundle.read_joint(profiles_file)
    assert {"fare", "trip_miles", "payment_type"} <= set(joint_reference.features)
    assert LABEL not in joint_reference.features and "trip_start_timestamp" not in joint_reference.features

    schema.run(current, tmp_path / "schema", LABEL, CURATED)
    report = validate.run(current, tmp_path / "schema", tmp_path / "anomalies",
                          baseline_stats=str(artifacts.stats_file(reference, names.TRAIN)),
                          params=SETTINGS.validate, source=str(current), examples_dir=current.parent / "examples",
                          drift_params=SETTINGS.drift, label=LABEL)
    joint_found = [a for a in report if a["kind"] == names.JOINT_DRIFT]
    assert len(joint_found) == 1 and not joint_found[0]["blocking"]
    assert joint_found[0]["feature"].split(", ")[0] == "fare" and "trip_miles" in joint_found[0]["feature"]
    assert "correlation +0.9" in joint_found[0]["description"]
    per_feature = {a["feature"] for a in report if a["kind"] == names.DRIFT}
    assert not per_feature & {"fare", "trip_miles"}
    assert not [a for a in report if a["kind"] == names.JOINT_SKEW]

    measured = json.loads((tmp_path / "anomalies" / names.MEASUREMENTS_FILE).read_text())
    assert measured[names.JOINT_DRIFT]["drifted"] and measured[names.JOINT_DRIFT]["n_cur"] > 2000
    assert measured[names.JOINT_SKEW]["compared"] and not measured[names.JOINT_SKEW]["drifted"]
    page = (tmp_path / "anomalies" / names.REPORT_HTML).read_text()
    assert 'id="joint_drift"' in page and 'id="joint_skew"' in page
    assert "fare ~ trip_miles" in page or "trip_miles ~ fare" in page
