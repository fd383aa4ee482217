"""The sidecar in front of the dev model server: pass-through, health, errors, limits, timeouts,
encodings, request ids, the version that answered, PII in the log, metrics."""
from __future__ import annotations

import gzip
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zlib

import pytest

from flywheel import bundle, serving_logs
from monitoring.segments import OPEN_SUFFIX
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME
from tests.support.taxi_rows import make_frame, rows_of
from tests.support.upstreams import Upstream, never, one_score_per_row

ROWS = rows_of(make_frame(4, seed=9))


def call(url: str, body: bytes | None = None, headers: dict | None = None, method: str | None = None
         ) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def predict_body(rows=ROWS) -> bytes:
    return json.dumps({"instances": rows}).encode()


def local_records(sidecar) -> list[dict]:
    """Records the sidecar wrote to its open (not yet shipped) segment."""
    records = []
    for path in sorted(sidecar.state.writer.dir.glob(f"*{OPEN_SUFFIX}")):
        found, skipped = serving_logs.parse_records(path.read_bytes())
        assert skipped == 0
        records += found
    return records


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


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies_are_decoded_once(dev_server, sidecar, encoding, compress):
    direct = call(dev_server.rest_url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    proxied = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", compress(predict_body()),
                   {"Content-Encoding": encoding})
    assert proxied[0] == 200 and json.loads(proxied[1]) == json.loads(direct[1])
    sidecar.drain()
    assert local_records(sidecar)[-1]["features"] == ROWS   # the log holds the decoded rows


def test_unsupported_or_broken_encoding_is_a_json_4xx(sidecar):
    url = sidecar.url + f"/v1/models/{MODEL_NAME}:predict"
    status, body, _ = call(url, predict_body(), {"Content-Encoding": "compress"})
    assert status == 415 and "not supported" in json.loads(body)["error"]
    status, body, _ = call(url, b"this is not gzip", {"Content-Encoding": "gzip"})
    assert status == 400 and json.loads(body)["error"]


def test_a_decompression_bomb_is_413_not_memory(sidecar_factory, dev_server):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, max_body_bytes=100_000)
    bomb = gzip.compress(b"[" * 50_000_000)     # 50 MB of brackets in ~50 KB
    status, body, _ = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "larger than 100000" in json.loads(body)["error"]


def test_request_ids_are_the_clients_when_plain_else_new(sidecar):
    url = sidecar.url + f"/v1/models/{MODEL_NAME}:predict"
    assert call(url, predict_body(), {"X-Request-Id": "order-17"})[2]["X-Request-Id"] == "order-17"
    for odd in ("x" * 300, "has space", "\u00e9t\u00e9"):
        given = call(url, predict_body(), {"X-Request-Id": odd.encode("utf-8").decode("latin-1")})[2]["X-Request-Id"]
        assert given != odd and len(given) == 32


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
    assert m("flywheel_ready") == 1
    metadata = bundle.read_metadata(str(exported_versions[1]))
    assert m("flywheel_model_pushed_timestamp_seconds") == metadata["pushed_at"]
    assert m("flywheel_schema_version") == metadata["schema_version"]
    assert m("flywheel_request_duration_seconds_count") == 4 and m("flywheel_upstream_duration_seconds_count") == 4


def test_upstream_down_is_502_and_readiness_drops_after_consecutive_failures(sidecar_factory, model_repository):
    sidecar = sidecar_factory(f"http://127.0.0.1:{free_port()}", model_repository, version_poll_s=60,
                              ready_after_failures=3)
    status, body, _ = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    assert status == 502 and "unreachable" in json.loads(body)["error"]
    status, body, _ = call(sidecar.url + "/healthz/ready")
    assert status == 503
    call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    assert "the last 3 calls to TF Serving" in json.loads(call(sidecar.url + "/healthz/ready")[1])["reason"]
    assert call(sidecar.url + "/healthz/live")[0] == 200
    assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "upstream_down"}) == 2
    assert sidecar.metric("flywheel_upstream_up", {"model": MODEL_NAME}) == 0


def test_readiness_drops_when_the_upstream_dies_without_waiting_for_a_poll(dev_server, sidecar_factory, tmp_path):
    """Failed proxy calls count: readiness does not wait for the next status poll."""
    from tests.support.servers import start_dev_server
    repository = dev_server.repository
    server = start_dev_server(repository, tmp_path)
    sidecar = sidecar_factory(server.rest_url, repository, version_poll_s=60, ready_after_failures=2)
    assert call(sidecar.url + "/healthz/ready")[0] == 200
    server.stop()
    for _ in range(2):
        assert call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())[0] == 502
    assert call(sidecar.url + "/healthz/ready")[0] == 503


def test_too_large_body_is_413(sidecar_factory, dev_server):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, max_body_bytes=1000)
    status, body, _ = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body(ROWS * 20))
    assert status == 413 and "larger than 1000" in json.loads(body)["error"]
    assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "too_large"}) == 1


def test_concurrency_cap_answers_503_with_retry_after(sidecar_factory, model_repository):
    """An upstream that never answers holds every request: the cap turns the rest away at once."""
    upstream = Upstream(never)
    try:
        sidecar = sidecar_factory(upstream.url, model_repository, max_in_flight=3, upstream_timeout_s=3)
        results: list = []

        def one():
            results.append(call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body()))
        held = [threading.Thread(target=one) for _ in range(3)]
        for t in held:
            t.start()
        time.sleep(0.5)
        status, body, headers = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
        assert status == 503 and "3 requests in flight" in json.loads(body)["error"] and headers["Retry-After"] == "1"
        assert sidecar.metric("flywheel_in_flight_requests", {"model": MODEL_NAME}) == 3
        for t in held:
            t.join()
        assert sorted(r[0] for r in results) == [504, 504, 504]
        assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "overloaded"}) == 1
    finally:
        upstream.stop()


def _slow_client(port: int, head: bytes, then: bytes = b"", wait_s: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        time.sleep(0.2)
        if then:
            s.sendall(then)
        s.settimeout(wait_s)
        try:
            return s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            return b"<timeout>"


def test_stalled_headers_and_bodies_are_cut_off(sidecar_factory, dev_server):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, header_timeout_s=0.5, body_timeout_s=0.5)
    port = sidecar.config.port
    # headers that never finish: the connection is closed (nothing to answer yet)
    assert _slow_client(port, b"POST /v1/models/x:predict HTTP/1.1\r\nHost: a\r\n") == b""
    # a body announced but never sent: 408 with a JSON reason
    reply = _slow_client(port, b"POST /v1/models/%s:predict HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{"
                         % MODEL_NAME.encode())
    assert reply.startswith(b"HTTP/1.1 408") and b"not received within 0.5s" in reply
    assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "body_timeout"}) == 1


def test_malformed_requests_get_json_errors(sidecar):
    port = sidecar.config.port
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
                b"POST /v1/feedback HTTP/1.1\r\nContent-Length: nope\r\n\r\n"):
        reply = _slow_client(port, raw)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split()[1] == b"400" and b"application/json" in head, reply
        assert json.loads(body)["error"]


def test_the_logged_version_is_the_one_that_answered(dev_server, sidecar):
    call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    call(sidecar.url + f"/v1/models/{MODEL_NAME}/versions/1:predict", predict_body())
    call(sidecar.url + f"/v1/models/{MODEL_NAME}/versions/7:predict", predict_body())
    sidecar.drain()
    records = local_records(sidecar)
    assert [(r["status"], r["version"]) for r in records] == [(200, 1), (200, 1), (404, None)]


def test_prediction_log_redacts_pii_at_any_depth_and_by_pattern(sidecar_factory, tmp_path):
    """Keys named as PII in any case and at any depth, and e-mail / phone values anywhere."""
    upstream = Upstream(one_score_per_row)   # accepts any row, as a model with free-form inputs would
    try:
        sidecar = sidecar_factory(upstream.url, tmp_path / "no_versions_here")
        rows = [dict(ROWS[0], RIDER_EMAIL="someone@example.com", note={"Rider-Email": "x", "deep": [{"c": "call 555-123-4567"}]},
                     comment="write to a.b@example.org please")]
        status, _, _ = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body(rows),
                            {"X-Request-Id": "req-42"})
        assert status == 200
        sidecar.drain()
        (record,) = local_records(sidecar)
        features = record["features"][0]
        assert features["RIDER_EMAIL"] == serving_logs.REDACTED and features["note"]["Rider-Email"] == serving_logs.REDACTED
        assert features["note"]["deep"][0]["c"] == f"call {serving_logs.REDACTED}"
        assert features["comment"] == f"write to {serving_logs.REDACTED} please"
        assert "pii_redacted" in record["flags"]
        text = b"".join(p.read_bytes() for p in sidecar.state.writer.dir.glob("*"))
        assert b"example" not in text and b"555-123" not in text
    finally:
        upstream.stop()


def test_rejected_bodies_are_logged_as_size_and_hash_and_feed_no_monitoring(sidecar):
    body = json.dumps({"instances": [{}] * 1000}).encode()   # TF Serving refuses rows without inputs
    status, _, headers = call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", body)
    assert status == 400
    sidecar.drain()
    (record,) = local_records(sidecar)
    import hashlib
    assert record["request_bytes"] == len(body) and record["request_sha256"] == hashlib.sha256(body).hexdigest()
    assert "features" not in record and record["request_id"] == headers["X-Request-Id"]
    assert sidecar.metric("flywheel_schema_anomalies_total", {"model": MODEL_NAME, "feature": "fare",
                                                              "kind": "missing"}) == 0
    assert sidecar.state.window.rows == 0


def test_window_takes_a_bounded_sample_of_one_large_request(sidecar_factory, dev_server):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, window_rows_per_request=25)
    rows = rows_of(make_frame(300, seed=3))
    assert call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body(rows))[0] == 200
    sidecar.drain()
    assert sidecar.state.window.rows == 25
    assert local_records(sidecar)[0]["rows"] == 300   # the log keeps every row


def test_promtool_accepts_metrics_output(sidecar):
    call(sidecar.url + f"/v1/models/{MODEL_NAME}:predict", predict_body())
    sidecar.drain()
    status, body, headers = call(sidecar.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    for name in ("flywheel_feature_drift", "flywheel_prediction_drift", "flywheel_drift_window_rows",
                 "flywheel_drift_values_total", "flywheel_drift_reference_share",
                 "flywheel_prediction_log_queue_depth", "flywheel_prediction_log_records_total"):
        assert name in text
    assert 'flywheel_feature_drift{feature="payment_type",measure="linf",model="taxi_tips"}' in text
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_each_kind_of_client_on_its_own_port(sidecar_factory, dev_server):
    feedback_port, metrics_port = free_port(), free_port()
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, feedback_port=feedback_port,
                              metrics_port=metrics_port)
    main = sidecar.url
    other = lambda port: f"http://127.0.0.1:{port}"  # noqa: E731
    assert call(main + f"/v1/models/{MODEL_NAME}:predict", predict_body())[0] == 200
    assert call(main + "/metrics")[0] == 404 and call(other(metrics_port) + "/metrics")[0] == 200
    assert call(main + "/v1/feedback", b"{}")[0] == 404 and call(other(feedback_port) + "/v1/feedback", b"{}")[0] == 400
    assert call(other(metrics_port) + f"/v1/models/{MODEL_NAME}:predict", predict_body())[0] == 404
    for port in (sidecar.config.port, feedback_port, metrics_port):
        assert call(other(port) + "/healthz/live")[0] == 200


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
