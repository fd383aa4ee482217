"""The sidecar's keep-alive upstream client against real sockets: framing, reuse, retry, timeout,
and the sidecar's 504 when TF Serving is too slow."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from monitoring.upstream import UpstreamError, UpstreamPool

from tests.support.net import free_port
from tests.support.servers import MODEL_NAME
from tests.support.upstreams import Upstream, never


class Scripted(asyncio.Protocol):
    """Answers each request with the next scripted reply; a float means: sleep that long, then reply."""
    replies: list = []

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        self.buffer = b""
        reply = Scripted.replies.pop(0)
        if isinstance(reply, tuple):
            delay, reply = reply
            asyncio.get_running_loop().call_later(delay, self.transport.write, reply)
        elif reply == b"CLOSE":
            self.transport.close()
        else:
            self.transport.write(reply)


async def _with_server(replies, body):
    Scripted.replies = list(replies)
    port = free_port()
    server = await asyncio.get_running_loop().create_server(Scripted, "127.0.0.1", port)
    try:
        return await body(UpstreamPool(f"http://127.0.0.1:{port}", timeout_s=0.5))
    finally:
        server.close()


def test_content_length_chunked_and_reuse():
    async def body(pool):
        first = await pool.request("POST", "/a", b"{}", [("Content-Type", "application/json")])
        reused = len(pool.idle) == 1
        second = await pool.request("GET", "/b", b"", [])
        return first, reused, second
    first, reused, second = asyncio.run(_with_server([
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": true}',
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"e\":\r\n4\r\n 1}\n\r\n0\r\n\r\n",
    ], body))
    assert first == (200, "application/json", b'{"a": true}') and reused
    assert second[0] == 404 and second[2] == b'{"e": 1}\n'


def test_stale_keepalive_connection_is_retried_once():
    async def body(pool):
        await pool.request("GET", "/", b"", [])
        # the server closes this kept-alive connection on the next request without answering it
        return await pool.request("GET", "/", b"", [])
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert asyncio.run(_with_server([ok, b"CLOSE", ok], body)) == (200, "application/json", b"ok")


def test_refused_and_timeout():
    async def refused():
        return await UpstreamPool(f"http://127.0.0.1:{free_port()}", 0.5).request("GET", "/", b"", [])
    with pytest.raises(UpstreamError):
        asyncio.run(refused())

    async def slow(pool):
        return await pool.request("GET", "/", b"", [])
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(_with_server([(2.0, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")], slow))


def test_sidecar_answers_504_when_upstream_is_slow(sidecar_factory, model_repository):
    upstream = Upstream(never)   # answers status calls, never a prediction
    try:
        sidecar = sidecar_factory(upstream.url, model_repository, upstream_timeout_s=0.3)
        req = urllib.request.Request(f"{sidecar.url}/v1/models/{MODEL_NAME}:predict", data=b'{"instances": []}')
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 504 and "did not answer" in json.loads(err.value.read())["error"]
        assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "upstream_timeout"}) == 1
        assert sidecar.metric("flywheel_requests_total", {"model": MODEL_NAME, "code": "504"}) == 1
    finally:
        upstream.stop()


def test_head_response_has_no_body():
    async def body(pool):
        return await pool.request("HEAD", "/", b"", [])
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\n\r\n"
    assert asyncio.run(_with_server([reply], body)) == (200, "application/json", b"")


def test_connect_gives_up_on_a_full_accept_backlog():
    """An upstream whose accept queue is full drops SYNs: connect() would hang for minutes."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # never accepted: the backlog fills, later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)

        async def connect():
            started = time.monotonic()
            with pytest.raises(UpstreamError, match="within 0.3s"):
                await UpstreamPool(f"http://127.0.0.1:{port}", 5.0, connect_timeout_s=0.3).request("GET", "/", b"", [])
            return time.monotonic() - started
        assert asyncio.run(connect()) < 2.0
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_interim_answers_are_read_past():
    async def body(pool):
        return await pool.request("POST", "/a", b"{}", []), len(pool.idle)
    reply = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert asyncio.run(_with_server([reply], body)) == ((200, "application/json", b"ok"), 1)


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno",  # one too many
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n",                                           # stray bytes
])
def test_a_connection_with_bytes_past_its_answer_is_not_reused(reply):
    async def body(pool):
        return await pool.request("GET", "/", b"", []), len(pool.idle)
    assert asyncio.run(_with_server([reply], body)) == ((200, "application/json", b"ok"), 0)


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
])
def test_an_answer_whose_framing_is_in_doubt_is_an_error_and_its_connection_closed(reply):
    async def body(pool):
        with pytest.raises(UpstreamError):
            await pool.request("GET", "/", b"", [])
        return len(pool.idle)
    assert asyncio.run(_with_server([reply], body)) == 0


def test_an_answer_arriving_after_the_timeout_reaches_no_one():
    async def body(pool):
        with pytest.raises(asyncio.TimeoutError):
            await pool.request("GET", "/late", b"", [])
        await asyncio.sleep(0.8)   # the late answer arrives now; its connection is gone
        return await pool.request("GET", "/next", b"", [])
    late = (0.7, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
    assert asyncio.run(_with_server([late, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"], body)) \
        == (200, "application/json", b"next")
