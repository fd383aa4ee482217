"""Serving by entity key: a real sidecar asks a real Feast feature server (`feast serve` on a
materialised SQLite online store) for the features of the keys a request carries; the model gets
the completed rows, the prediction log holds them, an unknown key answers 422 and is counted, a
feature server that is down answers 503."""
from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request

import pandas as pd
import pytest

from flywheel import serving_logs
from monitoring.config import SidecarConfig
from monitoring.metrics import ONLINE_FEATURE_NEWEST as NEWEST
from monitoring.metrics import ONLINE_FEATURE_ROWS as ROWS
from tests.support.featurestore import FeatureServer
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, SidecarThread, wait_http
from tests.support.upstreams import Upstream, ok

FEATURES = ("area_trips_1d", "area_tip_rate_1d", "area_avg_fare_1d")


@pytest.fixture(scope="module")
def feature_server(store, tmp_path_factory):
    repo, _ = store
    server = FeatureServer(repo, tmp_path_factory.mktemp("online") / "feast-serve.log")
    yield server, repo
    server.stop()


def _post(url: str, document: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(document).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _sidecar(tmp_path, upstream_url: str, feature_url: str) -> SidecarThread:
    config = SidecarConfig.from_params(upstream=upstream_url, port=free_port(), pod="features",
                                       model_name=MODEL_NAME, model_repository=str(tmp_path / "repository"),
                                       log_dir=str(tmp_path / "log"), log_destination=str(tmp_path / "logs"),
                                       version_poll_s=0.2, linger_s=0.01)
    config = dataclasses.replace(config, feature_store=dataclasses.replace(config.feature_store,
                                                                           server_url=feature_url))
    sidecar = SidecarThread(config)
    wait_http(f"{sidecar.url}/healthz/live", timeout_s=60)
    return sidecar


def test_keys_get_the_online_features_the_model_and_the_log_see_them(feature_server, tmp_path):
    server, repo = feature_server
    table = pd.read_parquet(repo.parent / "data" / "area_stats.parquet")
    latest = table.sort_values("event_timestamp").groupby("pickup_area").last()
    received = []

    def model(body: bytes) -> bytes:
        rows = json.loads(body)["instances"]
        received.append(rows)
        return ok(json.dumps({"predictions": [[0.5] for _ in rows]}).encode())

    upstream = Upstream(model)
    sidecar = _sidecar(tmp_path, upstream.url, server.url)
    predict = f"{sidecar.url}/v1/models/{MODEL_NAME}:predict"
    try:
        rows = [{"pickup_area": 8, "fare": 12.5}, {"pickup_area": 3, "fare": 7.0},
                {"pickup_area": 8, "fare": 30.0, "area_trips_1d": 999}]
        status, answer = _post(predict, {"instances": rows})
        assert status == 200 and len(answer["predictions"]) == 3, answer
        (sent,) = received
        for row, given in zip(sent, rows):
            expected = latest.loc[given["pickup_area"]]
            assert row["fare"] == given["fare"]
            for feature in FEATURES:
                want = given.get(feature, expected[feature])   # a feature the row carries is kept
                assert row[feature] == pytest.approx(float(want)), (given, feature)

        # A key the store does not know: a clear answer, nothing sent to the model, counted.
        status, answer = _post(predict, {"instances": [{"pickup_area": 8}, {"pickup_area": 999}]})
        assert status == 422 and "pickup_area 999: not in the feature store" in answer["error"]
        assert len(received) == 1

        # Rows without the key are not touched.
        status, _ = _post(predict, {"instances": [{"fare": 3.0}]})
        assert status == 200 and received[-1] == [{"fare": 3.0}]

        model_label = {"model": MODEL_NAME}
        assert sidecar.metric(ROWS + "_total", {**model_label, "outcome": "found"}) == 3
        assert sidecar.metric(ROWS + "_total", {**model_label, "outcome": "missing"}) == 1
        newest = latest.loc[[8, 3], "event_timestamp"].max().timestamp()
        assert sidecar.metric(NEWEST, model_label) == newest
        sidecar.drain()
    finally:
        sidecar.stop()
        upstream.stop()

    records, skipped = serving_logs.read_all(str(tmp_path / "logs"), serving_logs.LOGGED_PREDICTIONS_DIR)
    first = min(records, key=lambda r: r["time"])
    assert skipped == 0 and first["status"] == 200
    assert first["features"] == received[0]    # the log holds what the model saw


def test_a_feature_server_that_is_down_answers_503(tmp_path):
    upstream = Upstream(lambda body: ok(b'{"predictions": [[0.5]]}'))
    sidecar = _sidecar(tmp_path, upstream.url, f"http://127.0.0.1:{free_port()}")
    try:
        status, answer = _post(f"{sidecar.url}/v1/models/{MODEL_NAME}:predict", {"instances": [{"pickup_area": 8}]})
        assert status == 503 and "feature server" in answer["error"]
        assert sidecar.metric(ROWS + "_total", {"model": MODEL_NAME, "outcome": "error"}) == 1
    finally:
        sidecar.stop()
        upstream.stop()
