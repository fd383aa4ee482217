"""Precomputed answers served by key (monitoring/lookup.py) through a real sidecar and the
development model server on loopback: answers equal the online model's (to 1e-6), a missing key
or an old batch falls back to the online model, every prediction is logged, and the lookup's
metrics are exported. Cost: about 25 s (one batch run of 500 rows; the servers start once)."""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flywheel import names, params, serving_logs
from monitoring.config import SidecarConfig
from monitoring.lookup import ANSWERED_BY
from pipelines import batch_cli
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, SidecarThread, wait_http
from tests.support.taxi_rows import make_frame, rows_of

KEY = "trip_id"
MAX_AGE_S = 3600.0


class Clock:
    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory, dev_server):
    """500 keyed rows scored by the served version into a batch root of their own."""
    root = tmp_path_factory.mktemp("lookup")
    frame = make_frame(500, seed=11)
    frame.insert(0, KEY, [f"trip-{i}" for i in range(len(frame))])
    frame.to_csv(root / "keyed.csv", index=False)
    settings = params.override(params.load(), {
        "push.model_repository": str(dev_server.repository), "push.model_name": MODEL_NAME,
        "batch.key_column": KEY, "batch.output_root": str(root / "batch"), "batch.max_age_s": MAX_AGE_S,
        "batch.reload_s": 0.2})
    _, run_dir = batch_cli.run_inprocess(str(root / "keyed.csv"), settings, 1)
    return frame, settings, Path(run_dir)


def post(url: str, document: dict) -> tuple[dict, dict]:
    request = urllib.request.Request(url, json.dumps(document).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()), dict(response.headers)


def test_keys_answered_from_the_batch_else_online_logged_and_counted(dev_server, batch_run, tmp_path):
    frame, settings, run_dir = batch_run
    clock = Clock()
    config = SidecarConfig.from_params(settings, upstream=dev_server.rest_url, port=free_port(), pod="lookup",
                                       log_dir=str(tmp_path / "log"), log_destination=str(tmp_path / "logs"),
                                       version_poll_s=0.2, linger_s=0.01)
    sidecar = SidecarThread(config, wall_clock=clock)
    try:
        wait_http(f"{sidecar.url}/healthz/ready", timeout_s=60)
        deadline = time.monotonic() + 30
        while sidecar.metric("flywheel_lookup_keys", {"model": MODEL_NAME}) != len(frame):
            assert time.monotonic() < deadline, "the lookup did not load the batch"
            time.sleep(0.1)
        predict = f"{sidecar.url}/v1/models/{MODEL_NAME}:predict"
        rows = rows_of(frame.drop(columns=[KEY]).iloc[:20])
        keyed = [{KEY: k, **r} for k, r in zip(frame[KEY].iloc[:20], rows)]
        online, _ = post(f"{dev_server.rest_url}/v1/models/{MODEL_NAME}:predict", {"instances": rows})

        # Every key known: answered by the sidecar from the batch, equal to the online model's answers.
        answered, headers = post(predict, {"instances": keyed})
        assert headers.get(ANSWERED_BY) == "batch"
        np.testing.assert_allclose(np.asarray(answered["predictions"], float),
                                   np.asarray(online["predictions"], float), atol=1e-6)
        scored = pq.read_table(run_dir / names.BATCH_PREDICTIONS_DIR).to_pandas().set_index(names.KEY_COLUMN)
        np.testing.assert_allclose(np.asarray(answered["predictions"], float).reshape(-1),
                                   scored.loc[list(frame[KEY].iloc[:20]), names.OUTPUT_SCORE], atol=1e-6)

        # One key unknown: the whole request goes to the online model, without the key column.
        partial, headers = post(predict, {"instances": keyed[:4] + [{**keyed[4], KEY: "no-such-trip"}]})
        assert ANSWERED_BY not in headers
        np.testing.assert_allclose(np.asarray(partial["predictions"], float),
                                   np.asarray(online["predictions"][:5], float), atol=1e-6)

        # No key at all: proxied as before, the lookup not involved.
        plain, headers = post(predict, {"instances": rows[:3]})
        assert ANSWERED_BY not in headers and len(plain["predictions"]) == 3

        # The batch grows older than batch.max_age_s: online again.
        clock.offset = MAX_AGE_S + 60
        stale, headers = post(predict, {"instances": keyed[:2]})
        assert ANSWERED_BY not in headers
        np.testing.assert_allclose(np.asarray(stale["predictions"], float),
                                   np.asarray(online["predictions"][:2], float), atol=1e-6)

        model = {"model": MODEL_NAME}
        assert sidecar.metric("flywheel_lookup_rows_total", {**model, "outcome": "hit"}) == 20 + 4
        assert sidecar.metric("flywheel_lookup_rows_total", {**model, "outcome": "miss"}) == 1
        assert sidecar.metric("flywheel_lookup_rows_total", {**model, "outcome": "stale"}) == 2
        assert sidecar.metric("flywheel_lookup_requests_total", {**model, "outcome": "answered"}) == 1
        assert sidecar.metric("flywheel_lookup_requests_total", {**model, "outcome": "fallback"}) == 2
        assert sidecar.metric("flywheel_lookup_batch_age_seconds", model) > MAX_AGE_S
        assert sidecar.metric("flywheel_lookup_version", model) == 1
        assert sidecar.metric("flywheel_lookup_loads_total", {**model, "outcome": "loaded"}) == 1
        with urllib.request.urlopen(f"{sidecar.url}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        for name in ("flywheel_lookup_rows_total", "flywheel_lookup_requests_total",
                     "flywheel_lookup_batch_age_seconds", "flywheel_lookup_keys"):
            assert name in exposition
        sidecar.drain()
    finally:
        sidecar.stop()

    # Every prediction is in the log, the answered one too, with its rows (without the key).
    records, skipped = serving_logs.read_all(str(tmp_path / "logs"), serving_logs.LOGGED_PREDICTIONS_DIR)
    assert skipped == 0 and len(records) == 4
    first = min(records, key=lambda r: r["time"])
    assert first["status"] == 200 and first["version"] == 1 and first["rows"] == 20
    assert all(KEY not in row for row in first["features"])
    np.testing.assert_allclose(np.asarray(first["predictions"], float), np.asarray(answered["predictions"], float))
    assert sidecar.metric("flywheel_schema_anomalies_total", {"model": MODEL_NAME, "feature": "__unknown__",
                                                             "kind": "unknown"}) == 0


def test_another_version_falls_back_and_a_newer_run_replaces_the_loaded_one(batch_run):
    """The lookup on its own (the same code the sidecar calls): answers of a version other than
    the served one go online unless batch.require_served_version is false; a run published later
    is loaded by the next reload, the old index closed."""
    import shutil

    from prometheus_client import CollectorRegistry

    from flywheel import batch_runs
    from monitoring.lookup import Lookup
    from monitoring.metrics import SidecarMetrics

    frame, settings, run_dir = batch_run
    body = json.dumps({"instances": [{KEY: k, **r} for k, r in zip(frame[KEY].iloc[:3],
                                                                    rows_of(frame.drop(columns=[KEY]).iloc[:3]))]})
    registry = CollectorRegistry()
    metrics = SidecarMetrics(MODEL_NAME, registry)

    def count(name: str, outcome: str) -> float:
        return registry.get_sample_value(name, {"model": MODEL_NAME, "outcome": outcome})

    lookup = Lookup(str(run_dir.parent), MODEL_NAME, settings.batch, metrics, time.time)
    assert lookup.reload() and not lookup.reload()          # loaded once; nothing newer
    assert lookup.outcome(body.encode(), served_version=2).answer is None
    assert count("flywheel_lookup_rows_total", "other_version") == 3
    relaxed = Lookup(str(run_dir.parent), MODEL_NAME,
                     params.override(settings, {"batch.require_served_version": False}).batch,
                     SidecarMetrics(MODEL_NAME, CollectorRegistry()), time.time)
    relaxed.reload()
    answered = relaxed.outcome(body.encode(), served_version=2)
    assert answered.answer is not None and answered.version == 1 and KEY.encode() not in answered.body
    assert lookup.outcome(b'{"instances": [{"fare": 1.0}]}', 1) is None   # no key: not the lookup's

    first = lookup.loaded
    shutil.copytree(run_dir, run_dir.parent / "later-run")
    batch_runs.publish(str(run_dir.parent), "later-run", json.loads((run_dir / names.BATCH_SUMMARY).read_text()))
    assert lookup.reload() and lookup.loaded.run == "later-run"
    assert lookup.outcome(body.encode(), served_version=1).answer is not None
    with pytest.raises(Exception):                            # the replaced index was closed
        first.connection.execute("SELECT 1")
    assert count("flywheel_lookup_loads_total", "loaded") == 2
    lookup.close()
    relaxed.close()
