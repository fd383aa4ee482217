"""The sidecar's drift numbers against tfdv.validate_statistics (drift_comparator) on the same data.

Categorical L-infinity: both sides count every served value exactly (TFDV's rank histogram holds
all values of a low-cardinality feature), so they must agree to 1e-6.

Numeric approximate JSD: the maths is a port of TFDV's, so given TFDV's own histogram of the
served window, `drift.histogram_jsd` must reproduce TFDV's number to 1e-6. The sidecar online does
not have that histogram: it counts served values exactly into the baseline's buckets, while TFDV
builds an equal-width histogram of the served data (from a quantile sketch) and re-buckets both
assuming values are spread uniformly inside each bucket. The two numbers therefore differ by how
mass sits inside one bucket: observed <= ~0.01 with 10 buckets for continuous features, up to 0.023
for an integer feature whose values sit on bucket edges (trip_seconds); bounded here by 0.03, the
"bucket resolution" of the agreement.
"""
from __future__ import annotations

import pytest

from flywheel import names
from monitoring import baseline as baseline_io
from monitoring import drift
from monitoring.window import DriftWindow

from tests.support.servers import MODEL_NAME
from tests.support.taxi_rows import LABEL, make_frame, rows_of

BUCKET_RESOLUTION = 0.03


@pytest.fixture(scope="module")
def compared(exported_versions):
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    repository = exported_versions[1].parent.parent / "drift_repo"
    version_dir = repository / MODEL_NAME / "1"
    if not version_dir.exists():
        version_dir.parent.mkdir(parents=True)
        version_dir.symlink_to(exported_versions[1])
    baseline = baseline_io.load(str(repository), MODEL_NAME, 1)
    baseline_stats = tfdv.load_stats_binary(str(version_dir / names.EXTRA_DIR / names.BASELINE_STATS))
    schema = tfdv.load_schema_text(str(version_dir / names.EXTRA_DIR / names.BASELINE_SCHEMA))

    served = make_frame(2000, seed=5, miles_scale=1.6, cash_share=0.6).drop(columns=[LABEL])
    window = DriftWindow(baseline, size=2000)
    window.add(rows_of(served.assign(**{LABEL: 0})), [])
    ours = {(f, m): v for f, m, v in window.feature_drift()}

    for name in baseline.features:
        feature = tfdv.get_feature(schema, name)
        if name in baseline.categorical:
            feature.drift_comparator.infinity_norm.threshold = 1e-9
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = 1e-9
    served_stats = tfdv.generate_statistics_from_dataframe(served)
    anomalies = tfdv.validate_statistics(served_stats, schema, previous_statistics=baseline_stats,
                                         environment=names.ENV_SERVING)
    theirs = {}
    for info in anomalies.drift_skew_info:
        for measurement in info.drift_measurements:
            measure = {anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "linf",
                       anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "jsd"}[measurement.type]
            theirs[(info.path.step[0], measure)] = measurement.value
    served_hist = {f.path.step[0]: baseline_io.standard_histogram(f)
                   for f in served_stats.datasets[0].features if f.HasField("num_stats")}
    return baseline, ours, theirs, served_hist


def test_every_serving_feature_is_compared(compared):
    baseline, ours, theirs, _ = compared
    assert {f for f, _ in theirs} == set(baseline.features) == {f for f, _ in ours}
    assert LABEL not in baseline.features


def test_categorical_linf_matches_tfdv_exactly(compared):
    baseline, ours, theirs, _ = compared
    for name in baseline.categorical:
        assert ours[(name, "linf")] == pytest.approx(theirs[(name, "linf")], abs=1e-6), name
    assert theirs[("payment_type", "linf")] > 0.2  # the shift we made is visible


def test_jsd_maths_reproduces_tfdv_on_tfdvs_histograms(compared):
    baseline, _, theirs, served_hist = compared
    for name, base_hist in baseline.numeric.items():
        assert drift.histogram_jsd(base_hist, served_hist[name]) == pytest.approx(theirs[(name, "jsd")], abs=1e-6), name


def test_online_jsd_agrees_with_tfdv_to_bucket_resolution(compared):
    baseline, ours, theirs, _ = compared
    for name in baseline.numeric:
        assert abs(ours[(name, "jsd")] - theirs[(name, "jsd")]) <= BUCKET_RESOLUTION, (name, ours[(name, "jsd")],
                                                                                        theirs[(name, "jsd")])
    assert ours[("trip_miles", "jsd")] > 0.02 and ours[("trip_miles", "psi")] > 0.1


def test_same_distribution_shows_little_drift(exported_versions, train_frame):
    repository = exported_versions[1].parent.parent / "drift_repo"
    baseline = baseline_io.load(str(repository), MODEL_NAME, 1)
    window = DriftWindow(baseline, size=2000)
    window.add(rows_of(make_frame(2000, seed=99)), [0.5] * 10)
    # PSI's usual "no shift" level is 0.1; discrete ints (pickup_area) sit on bucket edges, where
    # TFDV's quantile-derived baseline counts and exact served counts differ a little.
    for feature, measure, value in window.feature_drift():
        assert value < (0.1 if measure == "psi" else 0.05), (feature, measure, value)
    assert dict(window.prediction_drift())["jsd"] > 0  # constant 0.5 scores are far from eval scores
