"""The sidecar in front of the dev model server: pass-through, health, errors, feedback, metrics."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from monitoring.prediction_log import LOG_NAME, REDACTED, read_records

from flywheel import bundle
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME
from tests.support.taxi_rows import make_frame, rows_of

ROWS = rows_of(make_frame(4, seed=9))


def call(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def predict_body(rows=ROWS) -> bytes:
    return json.dumps({"instances": rows}).encode()


@pytest.fixture
def sidecar(dev_server, sidecar_factory):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository)
    deadline = time.monotonic() + 20
    while call(sidecar.url + "/healthz/ready")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    return sidecar


@pytest.mark.parametrize("path, body", [
    (f"/v1/models/{MODEL_NAME}:predict", predict_body()),
    (f"/v1/models/{MODEL_NAME}/versions/1:predict", predict_body()),
    (f"/v1/models/{MODEL_NAME}:predict", json.dumps({"inputs": {k: [r[k] for r in ROWS] for k in ROWS[0]}}).encode()),
    (f"/v1/models/{MODEL_NAME}", None),
    (f"/v1/models/{MODEL_NAME}/metadata", None),
    (f"/v1/models/{MODEL_NAME}:predict", b"{not json"),
    (f"/v1/models/{MODEL_NAME}:predict", json.dumps({"instances": [{"fare": 1.0}]}).encode()),
    ("/v1/models/no_such_model:predict", predict_body()),
])
def test_responses_and_codes_pass_through_untouched(dev_server, sidecar, path, body):
    direct = call(dev_server.rest_url + path, body)
    proxied = call(sidecar.url + path, body)
    assert proxied[0] == direct[0]
    assert json.loads(proxied[1]) == json.loads(direct[1])
    assert proxied[2]["Content-Type"].startswith("application/json")
    assert proxied[2]["X-Request-Id"]


def test_health_metrics_and_error_kinds(sidecar, exported_versions):
    assert call(sidecar.url + "/healthz/live")[0] == 200
    status, body, _ = call(sidecar.url + "/healthz/ready")
    assert status == 200 and "version 1" in json.loads(body)["reason"]
    call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", b"{not json")
    call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", json.dumps({"instances": [{"fare": 1.0}]}).encode())
    call(sidecar.url + "/v1/models/nope:predict", predict_body())
    m = lambda name, **labels: sidecar.metric(name, {"model": MODEL_NAME, **labels})  # noqa: E731
    assert m("flywheel_requests_total", code="200") >= 1
    assert m("flywheel_requests_total", code="400") == 2 and m("flywheel_requests_total", code="404") == 1
    assert m("flywheel_errors_total", kind="bad_json") == 1
    assert m("flywheel_errors_total", kind="bad_request") == 1
    assert m("flywheel_errors_total", kind="unknown_model") == 1
    assert m("flywheel_model_version") == 1 and m("flywheel_baseline_loaded") == 1 and m("flywheel_upstream_up") == 1
    assert m("flywheel_model_pushed_timestamp_seconds") == bundle.read_metadata(str(exported_versions[1]))["pushed_at"]
    assert m("flywheel_request_duration_seconds_count") == 4 and m("flywheel_upstream_duration_seconds_count") == 4


def test_upstream_down_is_502_and_not_ready(sidecar_factory, model_repository):
    sidecar = sidecar_factory(f"http://127.0.0.1:{free_port()}", model_repository)
    status, body, _ = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    assert status == 502 and "unreachable" in json.loads(body)["error"]
    assert call(sidecar.url + "/healthz/ready")[0] == 503
    assert call(sidecar.url + "/healthz/live")[0] == 200
    assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "upstream_down"}) == 1
    assert sidecar.metric("flywheel_upstream_up", {"model": MODEL_NAME}) == 0


def test_too_large_body_is_413(sidecar_factory, dev_server):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, max_body_bytes=1000)
    status, body, _ = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body(ROWS * 20))
    assert status == 413 and "larger than 1000" in json.loads(body)["error"]
    assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "too_large"}) == 1


def test_prediction_log_records_with_pii_redacted(sidecar):
    rows = [dict(r, rider_email="someone@example.com") for r in ROWS]
    status, _, headers = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body(rows),
                              {"X-Request-Id": "req-42"})
    assert headers["X-Request-Id"] == "req-42"
    sidecar.drain()
    records, skipped = read_records(f"{sidecar.state.config.log_dir}/{LOG_NAME}")
    assert skipped == 0 and len(records) == 1
    record = records[0]
    assert record["request_id"] == "req-42" and record["version"] == 1 and record["model"] == MODEL_NAME
    assert record["status"] == status == 400  # the dev server, like TF Serving, rejects the unknown input
    assert all(f["rider_email"] == REDACTED for f in record["features"])
    assert "someone@example.com" not in open(f"{sidecar.state.config.log_dir}/{LOG_NAME}").read()
    assert sidecar.metric("flywheel_schema_anomalies_total",
                          {"model": MODEL_NAME, "feature": "__unknown__", "kind": "unknown"}) == len(rows)


def test_feedback_joins_request_id_and_updates_live_accuracy(sidecar):
    _, body, headers = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    scores = json.loads(body)["predictions"]
    sidecar.drain()
    labels = [1, 0, 1, 1]
    status, body, _ = call(sidecar.url + "/v1/feedback",
                           json.dumps({"request_id": headers["X-Request-Id"], "labels": labels}).encode())
    expected = sum(int(s >= 0.5) == y for s, y in zip(scores, labels)) / len(labels)
    assert status == 200 and json.loads(body) == {"joined": 4, "live_accuracy": expected}
    assert sidecar.metric("flywheel_live_accuracy", {"model": MODEL_NAME}) == expected
    assert sidecar.metric("flywheel_feedback_total", {"model": MODEL_NAME}) == 4
    assert call(sidecar.url + "/v1/feedback", json.dumps({"request_id": "nope", "label": 1}).encode())[0] == 404
    assert call(sidecar.url + "/v1/feedback", b"{oops")[0] == 400
    assert call(sidecar.url + "/v1/feedback", json.dumps({"request_id": headers["X-Request-Id"],
                                                          "labels": [1]}).encode())[0] == 400


def test_promtool_accepts_metrics_output(sidecar, tmp_path):
    call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    sidecar.drain()
    status, body, headers = call(sidecar.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    for name in ("flywheel_feature_drift", "flywheel_prediction_drift", "flywheel_drift_window_rows",
                 "flywheel_prediction_log_queue_depth", "flywheel_prediction_log_records_total"):
        assert name in text
    assert 'flywheel_feature_drift{feature="payment_type",measure="linf",model="taxi_tips"}' in text
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_not_ready_until_the_served_versions_baseline_loads(dev_server, sidecar_factory, tmp_path):
    import shutil
    from flywheel import names
    repository = tmp_path / "late_baseline"
    version_dir = repository / MODEL_NAME / "1"
    shutil.copytree(dev_server.repository / MODEL_NAME / "1", version_dir)
    stats = version_dir / names.EXTRA_DIR / names.BASELINE_STATS
    stats.rename(tmp_path / "held_back.pb")
    sidecar = sidecar_factory(dev_server.rest_url, repository)
    status, body, _ = call(sidecar.url + "/healthz/ready")
    assert status == 503 and "baseline" in json.loads(body)["reason"]
    assert sidecar.metric("flywheel_baseline_loaded", {"model": MODEL_NAME}) == 0
    assert call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())[0] == 200  # still serves
    (tmp_path / "held_back.pb").rename(stats)
    deadline = time.monotonic() + 10
    while call(sidecar.url + "/healthz/ready")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert call(sidecar.url + "/healthz/ready")[0] == 200
    assert sidecar.metric("flywheel_baseline_loaded", {"model": MODEL_NAME}) == 1
