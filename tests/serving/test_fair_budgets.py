"""Slow and idle clients cannot starve the others: body bytes count in the budget as they
arrive (not as declared), slow bodies are cut off, a connection that sends nothing is closed
after the idle timeout, and open connections are capped."""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests.serving.test_short_way import read_responses, request
from tests.support.servers import MODEL_NAME
from tests.support.upstreams import Upstream, one_score_per_row

SLOW_SOCKETS = 16
DECLARED = 4 * 1024 * 1024     # each slow socket announces the largest body allowed, sends 1 byte


@pytest.fixture
def upstream():
    server = Upstream(one_score_per_row)
    yield server
    server.stop()


def latencies_of_requests(sock: socket.socket, count: int) -> tuple[list[float], list[int]]:
    """-> (latencies in seconds, statuses) of `count` plain requests, one after another."""
    latencies, statuses = [], []
    for i in range(count):
        started = time.perf_counter()
        sock.sendall(request(f"n{i}"))
        (answer,) = read_responses(sock, 1)
        latencies.append(time.perf_counter() - started)
        statuses.append(answer[0])
    return latencies, statuses


def p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * len(values))]


def open_slow_socket(port: int, name: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request(name, body=b"{").replace(b"Content-Length: 1", b"Content-Length: %d" % DECLARED))
    return sock


def test_slow_sockets_cost_normal_requests_nothing(sidecar_factory, upstream, tmp_path):
    sidecar = sidecar_factory(upstream.url, tmp_path / "no_model", body_grace_s=3.0, idle_timeout_s=2.0)
    port = sidecar.config.port
    silent = socket.create_connection(("127.0.0.1", port))   # never sends a byte
    idle, busy, statuses = [], [], []
    with socket.create_connection(("127.0.0.1", port)) as normal:
        latencies_of_requests(normal, 50)   # warm-up
        # Idle and attacked in turns, so that the load of other processes falls on both alike.
        for turn in range(4):
            latencies, answered = latencies_of_requests(normal, 100)
            idle += latencies
            statuses += answered
            slow = [open_slow_socket(port, f"slow{turn}-{i}") for i in range(SLOW_SOCKETS)]
            time.sleep(0.05)
            latencies, answered = latencies_of_requests(normal, 100)
            busy += latencies
            statuses += answered
            if turn < 3:
                for sock in slow:
                    sock.close()
    assert set(statuses) == {200}     # before, the declared 16 x 4 MiB filled the 64 MiB budget: 503s
    assert p99(busy) <= 2 * p99(idle), (p99(idle), p99(busy))
    silent.settimeout(5)
    assert silent.recv(100) == b""    # closed after the idle timeout (2 s)
    silent.close()
    for sock in slow:                 # cut off: 1 byte in 3 s is far below the minimum rate
        (status, headers, body) = read_responses(sock, 1, timeout_s=10)[0]
        assert status == 408 and "too slow" in json.loads(body)["error"]
        assert headers.get("connection") == "close"
        sock.close()


def test_open_connections_are_capped(sidecar_factory, upstream, tmp_path):
    sidecar = sidecar_factory(upstream.url, tmp_path / "no_model", max_connections=4)
    held = [socket.create_connection(("127.0.0.1", sidecar.config.port)) for _ in range(4)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", sidecar.config.port)) as extra:
            (status, headers, body) = read_responses(extra, 1)[0]
            assert status == 503 and "4 connections open" in json.loads(body)["error"]
            assert headers["content-type"] == "application/json" and headers["retry-after"] == "1"
        held[0].sendall(request("still-served"))
        assert read_responses(held[0], 1)[0][0] == 200
        assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "overloaded"}) == 1
    finally:
        for sock in held:
            sock.close()
