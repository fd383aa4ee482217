"""A small keep-alive HTTP/1.1 client for the one upstream the sidecar talks to (TF Serving REST).

Why not aiohttp's ClientSession: on the proxy path its per-request machinery (timers, tracing,
cookie and header handling) cost about as much CPU as everything else the sidecar does; this
client does only what proxying TF Serving needs: a pool of persistent connections, Content-Length,
chunked and read-to-close bodies, a connect timeout and a response timeout, and one retry on a fresh connection when a reused
keep-alive connection turns out to have been closed by the server before it answered (nothing was
received, so the request was never processed).
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class UpstreamError(ConnectionError):
    """Upstream unreachable, or it closed the connection without a complete response."""


class _Connection(asyncio.Protocol):
    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.buffer = bytearray()
        self.closed = False
        self.received_any = False
        self.head_only = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        self.received_any = True
        if self.waiter is not None and not self.waiter.done():
            result = _parse(self.buffer, eof=False, head_only=self.head_only)
            if result is not None:
                self.waiter.set_result(result)

    def eof_received(self):
        self._finish_at_close()
        return False

    def connection_lost(self, exc):
        self._finish_at_close()

    def _finish_at_close(self):
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            result = _parse(self.buffer, eof=True, head_only=self.head_only)
            if result is not None:
                self.waiter.set_result(result)
            else:
                self.waiter.set_exception(UpstreamError("upstream closed the connection"
                                                        + (" mid-response" if self.received_any else "")))

    def request(self, data: bytes, timeout_s: float, head_only: bool = False) -> asyncio.Future:
        """Send a request; the future is its answer, or asyncio.TimeoutError after timeout_s (a
        timer on the loop, not a task per request)."""
        self.head_only = head_only
        self.buffer = bytearray()
        self.received_any = False
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _expire, waiter)
        waiter.add_done_callback(lambda _: timer.cancel())
        self.transport.write(data)
        return waiter


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _parse(buffer: bytearray, eof: bool, head_only: bool = False):
    """-> (status, content_type, body, keep_alive) once a whole response is in buffer, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).split(b"\r\n")
    status = int(head[0][9:12])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get(b"connection", b"").lower() != b"close" and not head[0].startswith(b"HTTP/1.0")
    content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
    start = end + 4
    if head_only:  # a response to HEAD has headers only, whatever Content-Length says
        return status, content_type, b"", keep_alive
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        if len(buffer) - start < length:
            return None
        return status, content_type, bytes(buffer[start:start + length]), keep_alive
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body, pos = bytearray(), start
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0 and buffer[line_end:line_end + 4] != b"\r\n\r\n":
                    return None
                return status, content_type, bytes(body), keep_alive
            if len(buffer) < line_end + 2 + size + 2:
                return None
            body += buffer[line_end + 2:line_end + 2 + size]
            pos = line_end + 2 + size + 2
    if status in (204, 304) or 100 <= status < 200:
        return status, content_type, b"", keep_alive
    if eof:  # no length: the body runs to the end of the connection
        return status, content_type, bytes(buffer[start:]), False
    return None


class UpstreamPool:
    def __init__(self, base_url: str, timeout_s: float, connect_timeout_s: float = 1.0, max_idle: int = 256):
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError(f"upstream {base_url!r}: only http:// is supported (TF Serving REST in the same pod)")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.host_header = f"{self.host}:{self.port}".encode()
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle
        self.idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            # A full accept backlog leaves a connect hanging for minutes: give up well before.
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, self.host, self.port),
                                             self.connect_timeout_s)
        except asyncio.TimeoutError:
            raise UpstreamError(f"cannot connect within {self.connect_timeout_s}s") from None
        except OSError as err:
            raise UpstreamError(f"cannot connect: {err.strerror or err}") from None
        return conn

    async def request(self, method: str, path_qs: str, body: bytes, headers: list[tuple[str, str]]):
        """-> (status, content_type, body). Raises UpstreamError or asyncio.TimeoutError."""
        head = [f"{method} {path_qs} HTTP/1.1".encode(), b"Host: " + self.host_header,
                b"Content-Length: " + str(len(body)).encode()]
        head += [f"{k}: {v}".encode("latin-1", "replace") for k, v in headers]
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        for attempt in (0, 1):
            conn = None
            while attempt == 0 and self.idle and conn is None:
                candidate = self.idle.pop()
                conn = None if candidate.closed else candidate
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                status, content_type, payload, keep_alive = await conn.request(data, self.timeout_s,
                                                                               head_only=method == "HEAD")
            except UpstreamError:
                if reused and attempt == 0 and not conn.received_any:
                    continue  # stale keep-alive connection: the server never saw this request
                raise
            except asyncio.TimeoutError:
                conn.transport.abort()
                raise
            if keep_alive and not conn.closed and len(self.idle) < self.max_idle:
                conn.waiter = None
                self.idle.append(conn)
            else:
                conn.transport.close()
            return status, content_type, payload
        raise UpstreamError("unreachable")

    def close(self) -> None:
        for conn in self.idle:
            conn.transport.close()
        self.idle.clear()
