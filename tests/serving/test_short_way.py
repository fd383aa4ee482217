"""Plain predict requests take the sidecar's short way (monitoring/fastpath.py); everything else,
and a connection after its first request that is not plain, goes through aiohttp. Both answer
the same, in order, within the same limits."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from monitoring import fastpath
from tests.support.servers import MODEL_NAME
from tests.support.upstreams import Upstream, one_score_per_row

PATH = f"/v1/models/{MODEL_NAME}:predict"
BODY = json.dumps({"instances": [{"fare": 7.5, "payment_type": "Cash"}]}).encode()


def request(request_id: str, body: bytes = BODY, extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nX-Request-Id: %s\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (PATH.encode(), request_id.encode(), extra, len(body), body))


def read_responses(sock: socket.socket, count: int, timeout_s: float = 10.0) -> list[tuple[int, dict, bytes]]:
    """`count` whole responses (Content-Length framed) from `sock`."""
    sock.settimeout(timeout_s)
    buffer, out = b"", []
    while len(out) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            end = head_end + 4 + int(headers["content-length"])
            if len(buffer) >= end:
                out.append((int(lines[0].split()[1]), headers, buffer[head_end + 4:end]))
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {count} responses")
        buffer += chunk
    return out


@pytest.fixture
def upstream():
    server = Upstream(one_score_per_row)
    yield server
    server.stop()


def test_plain_requests_are_recognised_and_others_are_not():
    plain = request("r1")
    found = fastpath.parse(plain + b"rest", 1 << 20)
    assert found is not None
    parsed, rest = found
    assert (parsed.path, parsed.body, rest) == (PATH, BODY, b"rest")
    assert ("X-Request-Id", "r1") in parsed.headers
    for not_plain in (plain[:-1],                                                  # body not all here
                      plain.replace(b"POST", b"GET"),
                      plain.replace(b"HTTP/1.1", b"HTTP/1.0"),
                      plain.replace(b":predict", b"%3Apredict"),                   # escapes: aiohttp decodes
                      request("r1", extra=b"Transfer-Encoding: chunked\r\n"),
                      request("r1", extra=b"Content-Encoding: gzip\r\n"),
                      request("r1", extra=b"Expect: 100-continue\r\n"),
                      request("r1", extra=b"Connection: close\r\n"),
                      request("r1", extra=b"Content-Length: 3\r\n"),                # two lengths
                      request("r1", extra=b" folded\r\n"),                          # obsolete line folding
                      request("r1", extra=b"Bad Header: x\r\n"),
                      request("r1", extra="X-Name: caf\u00e9\r\n".encode())):       # not ASCII
        assert fastpath.parse(not_plain, 1 << 20) is None, not_plain
    assert fastpath.parse(plain, len(BODY) - 1) is None                            # over the body limit


def test_pipelined_requests_are_answered_in_order(sidecar_factory, upstream, model_repository):
    sidecar = sidecar_factory(upstream.url, model_repository)
    with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
        sock.sendall(b"".join(request(f"p{i}") for i in range(5)))
        answers = read_responses(sock, 5)
    assert [(status, headers["x-request-id"]) for status, headers, _ in answers] == [(200, f"p{i}") for i in range(5)]
    assert all(json.loads(body) == {"predictions": [0.5]} for _, _, body in answers)
    sidecar.drain()
    assert sidecar.metric("flywheel_requests_total", {"model": MODEL_NAME, "code": "200"}) == 5
    assert sidecar.metric("flywheel_prediction_log_records_total", {"outcome": "written"}) == 5


def test_a_connection_goes_to_aiohttp_at_its_first_request_that_is_not_plain(sidecar_factory, upstream,
                                                                             model_repository):
    sidecar = sidecar_factory(upstream.url, model_repository)
    plain = request("a1")
    with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
        sock.sendall(plain)
        (first,) = read_responses(sock, 1)
        assert first[0] == 200 and "server" not in first[1]   # the short way: aiohttp would name itself
        sock.sendall(plain[:40])               # a request in two parts: not all here, so aiohttp's
        time.sleep(0.2)
        sock.sendall(plain[40:].replace(b"a1", b"a2"))
        sock.sendall(b"GET /healthz/live HTTP/1.1\r\nHost: sidecar\r\n\r\n" + request("a3"))
        answers = read_responses(sock, 3)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert answers[0][1]["x-request-id"] == "a2" and answers[2][1]["x-request-id"] == "a3"
    assert json.loads(answers[1][2]) == {"status": "live"}
    assert all("aiohttp" in headers["server"] for _, headers, _ in answers)


def test_an_idle_connection_is_closed_after_the_idle_timeout(sidecar_factory, upstream, model_repository):
    sidecar = sidecar_factory(upstream.url, model_repository, idle_timeout_s=0.5)
    with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
        for i in range(3):   # in use: kept open across the timeout
            sock.sendall(request(f"i{i}"))
            assert read_responses(sock, 1)[0][0] == 200
            time.sleep(0.3)
        sock.settimeout(5)
        assert sock.recv(100) == b""   # then idle: closed


def test_a_connection_past_its_maximum_age_is_closed_after_its_next_answer(sidecar_factory, upstream,
                                                                           model_repository):
    """A Service balances connections: a client that keeps its own must be sent to reconnect now
    and then to reach replicas added since. Both ways: the short one, and aiohttp's."""
    sidecar = sidecar_factory(upstream.url, model_repository, connection_max_age_s=1.0)
    health = b"GET /healthz/live HTTP/1.1\r\nHost: sidecar\r\n\r\n"
    for first, later in ((request("m0"), request("m1")), (health, health)):
        with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
            answers = []
            for _ in range(3):   # young: kept open
                sock.sendall(first)
                answers += read_responses(sock, 1)
                time.sleep(0.2)
            assert all(status == 200 and headers.get("connection", "").lower() != "close"
                       for status, headers, _ in answers), answers
            time.sleep(1.0)
            sock.sendall(later)
            ((status, headers, _),) = read_responses(sock, 1)
            assert status == 200 and headers["connection"].lower() == "close"
            sock.settimeout(5)
            assert sock.recv(100) == b""


def test_a_request_in_flight_is_answered_before_the_sidecar_stops(sidecar_factory, model_repository):
    def slow(body: bytes) -> bytes:
        time.sleep(1.0)
        return one_score_per_row(body)
    upstream = Upstream(slow)
    try:
        sidecar = sidecar_factory(upstream.url, model_repository)
        answers: list = []
        with socket.create_connection(("127.0.0.1", sidecar.config.port)) as sock:
            sock.sendall(request("s1"))
            time.sleep(0.3)
            stopping = threading.Thread(target=sidecar.stop)
            stopping.start()
            answers = read_responses(sock, 1)
            stopping.join(30)
        assert answers[0][0] == 200 and answers[0][1]["x-request-id"] == "s1"
        assert sidecar.state.stop_summary["written"] == 1 and sidecar.state.stop_summary["left"] == 0
    finally:
        upstream.stop()
