"""Online drift gives the pipeline's numbers on the same rows, per pod and for the fleet.

A version is trained by the pipeline's steps on taxi-like rows with a skewed feature (trip_miles,
gamma) and a zero-inflated one (tolls: 60% zeros, else exponential). Served rows move trip_miles
(x1.6), the cash share (30% -> 60%) and the zeros of tolls (60% -> 81%). The reference is the
pipeline's: `flywheel.drift.profiles_from_statistics` on the version's training statistics and
`flywheel.drift.compare` with params.yaml `drift:` on the same rows (the values the sidecar
received, as a table).

- One sidecar whose window holds every row: every number of every feature equals the pipeline's
  (test, p-values before and after Holm, W1 in sd, share change, PSI, decision, n).
- Three sidecars, rows split at random: the fleet's numbers every pod exports equal the pipeline's
  on the union of the rows; a real Prometheus with the rule file sums their per-bin counters, and
  the recorded fleet L-infinity and Jensen-Shannon divergence of the categorical features equal
  TFDV's own (`tfdv.validate_statistics`) on the union, the recorded PSI of the numeric features
  the pipeline's; the drift alert goes pending for the drifted features only.

Cost: one extra version trained (~40 s) and a Prometheus for ~40 s."""
from __future__ import annotations

import json
import math
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from flywheel import bundle, drift, names, params, schema_view
from monitoring import metrics as sidecar_metrics
from monitoring import rendering
from monitoring.window import decide
from tests.support.bundles import train_versions
from tests.support.prometheus import Prometheus
from tests.support.servers import MODEL_NAME, predict, predict_spread, start_dev_server
from tests.support.taxi_rows import LABEL, make_frame

SETTINGS = params.load().drift
SHIFTED = {"trip_miles", "payment_type", "tolls"}
MEASURES = ("test", "statistic", "p_value", "p_corrected", "effect", "effect_value", "wasserstein_sd", "linf", "psi",
            "n_ref", "n_cur", "missing_cur", "drifted")


def with_tolls(frame: pd.DataFrame, zeros: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tolls = np.where(rng.random(len(frame)) < zeros, 0.0, np.round(rng.exponential(4.0, len(frame)), 2))
    return frame.assign(tolls=tolls)


def served_rows(n: int, seed: int) -> list[dict]:
    frame = with_tolls(make_frame(n, seed=seed, miles_scale=1.6, cash_share=0.6), zeros=0.81, seed=seed)
    return json.loads(frame.drop(columns=[LABEL]).to_json(orient="records", double_precision=15))


def pipeline_report(version_dir, rows: list[dict]) -> dict[str, drift.FeatureDrift]:
    """What the pipeline's validate step decides for these rows (as a table) against the version as
    its baseline: the same reference profiles, the same time parts, the same rule."""
    from components import validate
    found = bundle.load(str(version_dir))
    features = schema_view.by_name(found.schema, names.ENV_SERVING)
    times = {name: f.time_format for name, f in features.items() if f.time}
    reference = validate.reference_profiles(bundle.path(str(version_dir), names.BASELINE_STATS))
    _, _, results = validate.decide(validate.DRIFT, reference, [pd.DataFrame(rows)], set(features), times, SETTINGS)
    return {r.feature: r for r in results}


def assert_same(ours: list, theirs: dict[str, drift.FeatureDrift]) -> None:
    assert {r.feature for r in ours} == set(theirs)
    for result in ours:
        expected = theirs[result.feature]
        for measure in MEASURES:
            a, b = getattr(result, measure), getattr(expected, measure)
            if isinstance(a, float) and math.isnan(a):
                assert math.isnan(b), (result.feature, measure)
            elif isinstance(a, (str, bool)):
                assert a == b, (result.feature, measure, a, b)
            else:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (result.feature, measure, a, b)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero_inflated")
    versions = train_versions(root, [with_tolls(make_frame(4000, seed=1), zeros=0.6, seed=1)], MODEL_NAME, LABEL)
    server = start_dev_server(versions[1].parent.parent, root)
    yield versions[1], server
    server.stop()


def test_one_sidecar_gives_the_pipelines_numbers_on_the_same_rows(model, sidecar_factory):
    version_dir, server = model
    sidecar = sidecar_factory(server.rest_url, server.repository, window_rows=5000, window_rows_per_request=1000)
    rows = served_rows(1500, seed=7)
    for start in range(0, len(rows), 50):
        predict(sidecar.url, rows[start:start + 50])
    sidecar.drain()
    baseline = sidecar.state.baseline
    _, n, summaries = sidecar.state.window.summaries()
    features, _ = decide(baseline, summaries, SETTINGS)
    theirs = pipeline_report(version_dir, rows)
    assert n == 1500 and "tolls" in theirs and theirs["tolls"].test == drift.KS_CHI2   # point mass at 0
    assert_same(features, theirs)
    drifted = {r.feature for r in features if r.drifted}
    assert SHIFTED <= drifted and not drifted & {"passenger_count", "pickup_area", "company"}, drifted
    # and what /metrics exports is that decision
    text = urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=10).read().decode()
    for feature, result in theirs.items():
        line = f'flywheel_feature_drift{{feature="{feature}",measure="drifted",model="{MODEL_NAME}"}} {float(result.drifted)}'
        assert line in text, line


def test_the_fleet_gives_the_pipelines_numbers_on_the_union_and_prometheus_tfdvs(model, sidecar_factory, tmp_path):
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    version_dir, server = model
    pods = [sidecar_factory(server.rest_url, server.repository, window_rows=5000, window_rows_per_request=1000,
                            fleet_interval_s=0.5) for _ in range(3)]
    prometheus = Prometheus(tmp_path, {f"pod{i}": f"127.0.0.1:{p.config.port}" for i, p in enumerate(pods)})
    try:
        rows = served_rows(1800, seed=11)
        predict_spread(pods, rows)
        theirs = pipeline_report(version_dir, rows)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
                p.state.fleet_view is not None and p.state.fleet_view.rows == len(rows) for p in pods):
            time.sleep(0.2)
        for pod in pods:
            view = pod.state.fleet_view
            assert view.instances == 3 and view.rows == len(rows)
            assert_same(view.features, theirs)
        per_pod = decide(pods[0].state.baseline, pods[0].state.window.summaries()[2], SETTINGS)[0]
        assert {r.feature: r.n_cur for r in per_pod}["fare"] < len(rows)    # each pod alone sees a share

        # Prometheus: the per-bin counters summed across the pods, TFDV's distances recorded.
        found = bundle.load(str(version_dir))
        schema = found.schema
        for feature in schema.feature:
            feature.drift_comparator.infinity_norm.threshold = 1e-9
            feature.drift_comparator.jensen_shannon_divergence.threshold = 1e-9
        union = tfdv.generate_statistics_from_dataframe(pd.DataFrame(rows)[["payment_type", "company"]])
        anomalies = tfdv.validate_statistics(union, schema, previous_statistics=found.stats,
                                             environment=names.ENV_SERVING)
        tfdv_measures = {}
        for info in anomalies.drift_skew_info:
            for m in info.drift_measurements:
                kind = {anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "linf",
                        anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "jsd"}[m.type]
                tfdv_measures[(info.path.step[0], kind)] = m.value

        def recorded(name: str) -> dict[str, float]:
            return {s["metric"]["feature"]: s["value"] for s in prometheus.query(f'{name}{{model="{MODEL_NAME}"}}')}
        prometheus.wait_until(lambda: [s["value"] for s in prometheus.query(
            f'sum({sidecar_metrics.DRIFT_VALUES}_total{{feature="fare"}})')] == [len(rows)], 60, "every pod's counts scraped")
        time.sleep(3)   # and the recording rules evaluated on them
        # Counters start at 0 and every pod is scraped on the same schedule, so increase()'s
        # extrapolation scales each pod's bins alike; what remains is the small difference between
        # the pods' factors (~1/scrapes): 0.002 covers it for shares, 2% for PSI (whose floored log
        # terms of nearly empty deciles magnify a share's error).
        linf, jsd, psi = recorded(rendering.LINF), recorded(rendering.JSD), recorded(rendering.PSI)
        for feature in ("payment_type", "company"):
            assert linf[feature] == pytest.approx(tfdv_measures[(feature, "linf")], abs=0.002), feature
            assert jsd[feature] == pytest.approx(tfdv_measures[(feature, "jsd")], abs=0.002), feature
        for feature in ("trip_miles", "fare", "tolls", "trip_seconds"):
            assert psi[feature] == pytest.approx(theirs[feature].psi, rel=0.02, abs=0.002), feature
        print("\nfleet vs TFDV on the union: " + ", ".join(
            f"{f} L-inf {linf[f]:.4f}/{tfdv_measures[(f, 'linf')]:.4f} JSD {jsd[f]:.4f}/{tfdv_measures[(f, 'jsd')]:.4f}"
            for f in ("payment_type", "company")) + "; PSI recorded/pipeline " + ", ".join(
            f"{f} {psi[f]:.4f}/{theirs[f].psi:.4f}" for f in ("trip_miles", "tolls")))
        alerts = prometheus.wait_until(
            lambda: prometheus.query('ALERTS{alertname="FlywheelFeatureDriftSustained"}') or None, 30,
            "the drift alert to go pending")
        assert {a["metric"]["feature"] for a in alerts} == {r.feature for r in theirs.values() if r.drifted}
        assert {a["metric"]["alertstate"] for a in alerts} == {"pending"}
    finally:
        prometheus.stop()
