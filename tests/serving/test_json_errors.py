"""Every answer the sidecar gives is JSON, also aiohttp's own low-level refusals; `Expect` is the
sidecar's to answer."""
from __future__ import annotations

import json
import socket

import pytest

from tests.serving.test_short_way import read_responses
from tests.support.servers import MODEL_NAME
from tests.support.upstreams import Upstream, one_score_per_row

PREDICT = f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: x\r\n".encode()


@pytest.fixture
def sidecar(sidecar_factory, tmp_path):
    upstream = Upstream(one_score_per_row)
    yield sidecar_factory(upstream.url, tmp_path / "no_model")
    upstream.stop()


@pytest.mark.parametrize("raw, status", [
    (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404),
    (b"GET /healthz/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 16384 + b"\r\n\r\n", 400),
    (b"GET /healthz/live HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(300)) + b"\r\n", 400),
    (b"GET /" + b"p" * 8192 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (PREDICT + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    (PREDICT + b"Expect: 100-continue\r\nContent-Length: 99999999\r\n\r\n", 413),   # refused before the body
    (PREDICT + b"Expect: something-else\r\nContent-Length: 2\r\n\r\n{}", 417),
])
def test_refusals_are_json(sidecar, raw, status):
    with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
        sock.sendall(raw)
        (got, headers, body) = read_responses(sock, 1)[0]
    assert got == status and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]


def test_expect_100_continue_is_answered_by_the_sidecar(sidecar):
    body = json.dumps({"instances": [{"fare": 1.0}, {"fare": 2.0}]}).encode()
    with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
        sock.settimeout(10)
        sock.sendall(PREDICT + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (status, _, answer) = read_responses(sock, 1)[0]
    assert status == 200 and json.loads(answer) == {"predictions": [0.5, 0.5]}


def test_every_answered_predict_request_leaves_one_log_record(sidecar_factory, tmp_path):
    """Refused by the sidecar (413, 415), or not answered by TF Serving (504): one short record
    each (status, size and hash), so written + dropped = answered."""
    from tests.support.upstreams import never
    upstream = Upstream(never)   # answers status calls, never a prediction
    try:
        sidecar = sidecar_factory(upstream.url, tmp_path / "no_model", upstream_timeout_s=0.3, max_body_bytes=64)
        body = b'{"instances": [{"fare": 1.0}]}'
        sent = [(PREDICT + b"Content-Length: %d\r\n\r\n%s" % (len(body), body), 504),
                (PREDICT + b"Content-Length: 100\r\n\r\n" + b" " * 100, 413),
                (PREDICT + b"Content-Encoding: compress\r\nContent-Length: 2\r\n\r\n{}", 415)]
        for raw, status in sent:
            with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
                sock.sendall(raw)
                assert read_responses(sock, 1)[0][0] == status
        sidecar.drain()
        from tests.serving.test_sidecar_proxy import local_records
        records = local_records(sidecar)
        assert sorted(r["status"] for r in records) == [413, 415, 504]
        assert all(r["rows"] == 0 and "request_sha256" in r for r in records)
        assert sidecar.metric("flywheel_prediction_log_records_total", {"outcome": "written"}) == 3
    finally:
        upstream.stop()
