"""Statistics, schema and validate on real TFDV protos; unshifted spans raise nothing."""
import json

import pytest
import tensorflow_data_validation as tfdv

from components import schema, statistics, validate
from flywheel import artifacts, bundle, names, schema_view
from flywheel.errors import DataError
from flywheel.params import DriftParams, IngestParams, ValidateParams

from tests.support.spans import CURATED, LABEL


def _feature(stats, name):
    return next(f for f in stats.datasets[0].features if f.path.step == [name])


def test_statistics_per_split_and_html(tmp_path, clean_spans):
    from components import ingest
    ingest.run(str(clean_spans[0]), tmp_path / "examples", IngestParams(label=LABEL))
    rows = statistics.run(tmp_path / "examples", tmp_path / "stats", tmp_path / "stats.html", schema_path=CURATED,
                          facets_path=tmp_path / "facets.html")
    for split in names.SPLITS:
        stats = bundle.read_stats(str(artifacts.stats_file(tmp_path / "stats", split)))
        assert stats.datasets[0].name == split and stats.datasets[0].num_examples == rows[f"rows_{split}"]
        assert "rider_email" not in {f.path.step[0] for f in stats.datasets[0].features}
    train = bundle.read_stats(str(artifacts.stats_file(tmp_path / "stats", names.TRAIN)))
    # The curated schema makes integer categoricals carry top values (what L-infinity needs).
    assert _feature(train, "pickup_area").HasField("string_stats")
    assert _feature(train, "fare").HasField("num_stats")
    # The page: every profiled column drawn, nothing fetched (tests/browser opens it in Chromium).
    page = (tmp_path / "stats.html").read_text()
    profiled = bundle.read_profiles(str(artifacts.profiles_file(tmp_path / "stats", names.TRAIN)))
    assert page.count('<svg class="chart"') == len(profiled) and "Content-Security-Policy" in page
    facets = (tmp_path / "facets.html").read_text()
    assert "facets-overview" in facets and len(facets) > 10_000   # both splits embedded as base64 protos


def test_inferred_schema_has_environments_and_time_domain(tmp_path, clean_stats):
    meta = schema.run(clean_stats[0], tmp_path / "schema", LABEL, curated_schema="")
    assert meta["schema_source"] == "inferred"
    inferred = tfdv.load_schema_text(str(tmp_path / "schema" / names.SCHEMA_FILE))
    assert list(inferred.default_environment) == [names.ENV_TRAINING, names.ENV_SERVING]
    assert list(tfdv.get_feature(inferred, LABEL).not_in_environment) == [names.ENV_SERVING]
    assert tfdv.get_feature(inferred, "trip_start_timestamp").HasField("time_domain")
    assert set(tfdv.get_domain(inferred, "payment_type").value) == {"Cash", "Credit Card", "Mobile", "Prcard", "Unknown"}


def test_curated_schema_imported_and_relative_paths_resolve(tmp_path, clean_stats):
    meta = schema.run(clean_stats[0], tmp_path / "schema", LABEL, curated_schema="flywheel/curated/schema.pbtxt")
    assert meta["schema_source"] == f"curated:{CURATED}"
    assert schema_view.resolve_curated("") is None
    with pytest.raises(DataError, match="nope.pbtxt: the curated schema does not exist"):
        schema_view.resolve_curated("flywheel/curated/nope.pbtxt")
    with pytest.raises(DataError, match="column 'tip' of .*schema.pbtxt: the label is not a feature"):
        schema.run(clean_stats[0], tmp_path / "schema2", "tip", curated_schema=str(CURATED))


def test_clean_spans_have_no_anomalies(steps, clean_stats):
    """Span 2 against span 1's baseline, and span 3 against span 2: nothing to report."""
    for previous, current in ((0, 1), (1, 2)):
        assert steps.validate(clean_stats[current], baseline=clean_stats[previous]) == []
    measured = json.loads((steps.root / "anomalies" / names.MEASUREMENTS_FILE).read_text())
    compared = {(r["feature"], r["test"]) for r in measured["drift"]}
    assert ("pickup_area", "chi2") in compared and ("fare", "ks") in compared and (LABEL, "chi2") in compared
    assert {r["feature"] for r in measured["skew"]} == {r["feature"] for r in measured["drift"]}
    # The timestamp is compared by its parts (a week of data covers weekdays and hours), never by value.
    assert "trip_start_timestamp" not in {r["feature"] for r in measured["drift"]}
    assert {"trip_start_timestamp:weekday", "trip_start_timestamp:hour"} <= {r["feature"] for r in measured["drift"]}
    assert not any(r["drifted"] for r in measured["drift"] + measured["skew"])
    # TFDV's own distances are kept for the record.
    assert {(m["kind"], m["measure"]) for m in measured["tfdv"]} == {("drift", "linf"), ("drift", "jsd"),
                                                                    ("skew", "linf"), ("skew", "jsd")}


def test_first_run_has_no_drift_but_still_checks_skew(steps, clean_stats):
    assert steps.validate(clean_stats[0]) == []
    measured = json.loads((steps.root / "anomalies" / names.MEASUREMENTS_FILE).read_text())
    assert measured["drift"] == [] and measured["skew"] and measured["baseline"] == ""
    anomalies = tfdv.load_anomalies_text(str(steps.root / "anomalies" / names.ANOMALIES_FILE))
    assert not anomalies.anomaly_info


def test_block_on_drift_and_thresholds(steps, clean_stats):
    """With every threshold at zero and alpha 1, every feature counts as changed: drift is
    reported, skew blocks; block_on_drift makes drift block too."""
    steps.validate(clean_stats[1], baseline=clean_stats[0])   # writes the schema
    everything = DriftParams(alpha=1.0, skew_alpha=1.0, wasserstein_sd=0.0, linf=0.0, psi=0.0)
    arguments = dict(baseline_stats=str(artifacts.stats_file(clean_stats[0], names.TRAIN)),
                     examples_dir=clean_stats[1].parent / "examples", drift_params=everything, label=LABEL)
    with pytest.raises(DataError, match="skew"):
        validate.run(clean_stats[1], steps.root / "schema", steps.root / "zero", **arguments)
    report = json.loads((steps.root / "zero" / names.ANOMALY_REPORT).read_text())
    assert {a["kind"] for a in report if not a["blocking"]} == {"drift"}
    assert all(a["blocking"] for a in report if a["kind"] == "skew")
    with pytest.raises(DataError, match="drift"):
        validate.run(clean_stats[1], steps.root / "schema", steps.root / "zero2",
                     params=ValidateParams(block_on_drift=True),
                     **{**arguments, "drift_params": DriftParams(alpha=1.0, wasserstein_sd=0.0, linf=0.0, psi=0.0)})


def test_baseline_is_the_resolved_production_bundle(tmp_path, clean_stats):
    """validate reads the baseline from the resolve step's production artifact, never the repository."""
    from components import resolve
    resolve.run(str(tmp_path / "repo"), "m", tmp_path / "none")
    assert validate.production_baseline(tmp_path / "none") is None
    for version in (1, 3):
        version_dir = tmp_path / "repo" / "m" / str(version)
        bundle.add_files(str(version_dir), {names.BASELINE_STATS: str(artifacts.stats_file(clean_stats[0], names.TRAIN))})
    (tmp_path / "repo" / "m" / ".tmp-4-abc").mkdir()
    found = resolve.run(str(tmp_path / "repo"), "m", tmp_path / "production")
    assert found["version"] == 3 and found["bundle_files"] == [names.BASELINE_STATS]
    baseline = validate.production_baseline(tmp_path / "production")
    assert baseline == bundle.path(str(tmp_path / "production"), names.BASELINE_STATS)
    assert validate.load_baseline(baseline).datasets[0].num_examples > 0
