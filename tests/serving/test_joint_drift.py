"""The joint drift check online: each pod's window and the fleet's give the pipeline's numbers on
the same rows, and a real Prometheus with the rule file raises the joint drift alert.

A version is trained by the pipeline's steps on taxi-like rows (fare rises with trip_miles). The
served rows hand the fares out in the reverse order of the miles: every value of both columns is
kept (no per-feature test can see it), their correlation flips. The reference is the pipeline's:
the joint reference pushed with the version and `flywheel.drift.joint.compare_joint` on the rows
the sidecars received, as a table. Cost: one version trained (~40 s) and a Prometheus (~30 s)."""
from __future__ import annotations

import json
import time
import urllib.request

import pandas as pd
import pytest

from flywheel import bundle, names, params
from flywheel.drift import joint
from monitoring import metrics as sidecar_metrics
from tests.support.bundles import train_versions
from tests.support.prometheus import Prometheus
from tests.support.servers import MODEL_NAME, predict_spread, start_dev_server
from tests.support.taxi_rows import LABEL, fares_reversed, make_frame

SETTINGS = params.load().drift


def flipped_rows(n: int, seed: int) -> list[dict]:
    return json.loads(fares_reversed(make_frame(n, seed=seed)).drop(columns=[LABEL])
                      .to_json(orient="records", double_precision=15))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    versions = train_versions(root, [make_frame(4000, seed=1)], MODEL_NAME, LABEL)
    server = start_dev_server(versions[1].parent.parent, root)
    yield versions[1], server
    server.stop()


def assert_same(ours: joint.JointDrift, theirs: joint.JointDrift) -> None:
    assert (ours.drifted, ours.pairs, ours.n_cur, ours.features) == (theirs.drifted, theirs.pairs, theirs.n_cur,
                                                                       theirs.features)
    for a, b in zip(ours.top, theirs.top, strict=True):
        assert (a.a, a.b, a.drifted) == (b.a, b.b, b.drifted)
        assert (a.r_cur, a.z, a.p_corrected) == pytest.approx((b.r_cur, b.z, b.p_corrected), rel=1e-9, abs=1e-12)


def test_the_fleet_gives_the_pipelines_joint_decision_and_prometheus_alerts(model, sidecar_factory, tmp_path):
    version_dir, server = model
    reference = bundle.read_joint(bundle.path(str(version_dir), names.BASELINE_PROFILES))
    assert {"fare", "trip_miles"} <= set(reference.features)
    pods = [sidecar_factory(server.rest_url, server.repository, window_rows=5000, window_rows_per_request=1000,
                            fleet_interval_s=0.5) for _ in range(3)]
    prometheus = Prometheus(tmp_path, {f"pod{i}": f"127.0.0.1:{p.config.port}" for i, p in enumerate(pods)})
    try:
        rows = flipped_rows(1800, seed=11)
        predict_spread(pods, rows)
        table = pd.DataFrame(rows)
        theirs = joint.compare_joint(reference, reference.summarize({c: table[c].to_numpy() for c in table}),
                                     SETTINGS)
        assert theirs.drifted and set(theirs.features[:2]) == {"fare", "trip_miles"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
                p.state.fleet_view is not None and p.state.fleet_view.rows == len(rows) for p in pods):
            time.sleep(0.2)
        for pod in pods:
            assert pod.state.fleet_view.instances == 3
            assert_same(pod.state.fleet_view.joint, theirs)
        own = pods[0].state.joint_decision(pods[0].state.window)
        assert own.compared and 0 < own.n_cur < len(rows)              # each pod alone sees a share
        text = urllib.request.urlopen(f"{pods[0].url}/metrics", timeout=10).read().decode()
        assert f'{sidecar_metrics.FLEET_JOINT_DRIFT}{{measure="drifted",model="{MODEL_NAME}"}} 1.0' in text
        assert f'{sidecar_metrics.JOINT_DRIFT}{{measure="rows",model="{MODEL_NAME}"}} {float(own.n_cur)}' in text

        alerts = prometheus.wait_until(
            lambda: prometheus.query('ALERTS{alertname="FlywheelJointDrift"}') or None, 60,
            "the joint drift alert to go pending")
        assert {a["metric"]["pair"] for a in alerts} == {f"{p.a} ~ {p.b}" for p in theirs.top if p.drifted}
        assert {a["metric"]["alertstate"] for a in alerts} == {"pending"}
        assert not prometheus.query('ALERTS{alertname="FlywheelFeatureDriftSustained",feature=~"fare|trip_miles"}')
    finally:
        prometheus.stop()
