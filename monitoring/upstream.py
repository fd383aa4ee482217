"""A small keep-alive HTTP/1.1 client for the one upstream the sidecar talks to (TF Serving REST).

Why not aiohttp's ClientSession: on the proxy path its per-request machinery (timers, tracing,
cookie and header handling) cost about as much CPU as everything else the sidecar does; this
client does only what proxying TF Serving needs: a pool of persistent connections, Content-Length,
chunked and read-to-close bodies, a connect timeout and a response timeout, and one retry on a fresh connection when a reused
keep-alive connection turns out to have been closed by the server before it answered (nothing was
received, so the request was never processed).

Every answer must belong to its request, so a connection goes back to the pool only when its
framing is beyond doubt: interim 1xx answers are read past (RFC 9110 15.2), and a connection that
sent a malformed answer, more bytes than its answer, anything while idle, or that timed out, is
closed instead of reused.
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class UpstreamError(ConnectionError):
    """Upstream unreachable, or it closed the connection without a complete response."""


class FramingError(UpstreamError):
    """The upstream's bytes are not an HTTP/1.1 answer this client can delimit."""


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
        self.received_any = True
        if self.waiter is None or self.waiter.done():
            # Bytes nobody asked for (or past an answer already taken): whatever they are, the
            # next answer read here could be someone else's. Never reuse this connection.
            self._discard()
            return
        self.buffer += data
        try:
            result = _parse(self.buffer, eof=False, head_only=self.head_only)
        except FramingError as err:
            self.waiter.set_exception(err)
            self._discard()
            return
        if result is not None:
            self.waiter.set_result(result)

    def eof_received(self):
        self._finish_at_close()
        return False

    def connection_lost(self, exc):
        self._finish_at_close()

    def _discard(self):
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish_at_close(self):
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            try:
                result = _parse(self.buffer, eof=True, head_only=self.head_only)
            except FramingError as err:
                self.waiter.set_exception(err)
                return
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
    """-> (status, content_type, body, keep_alive) once a whole final response is in buffer, else
    None. Interim (1xx) responses before it are skipped; keep_alive is False when anything follows
    the response in buffer. Raises FramingError on what cannot be delimited for sure."""
    start = 0
    while True:
        end = buffer.find(b"\r\n\r\n", start)
        if end < 0:
            return None
        head = bytes(buffer[start:end]).split(b"\r\n")
        status_line = head[0]
        if not (status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) and status_line[9:12].isdigit()
                and status_line[12:13] in (b" ", b"")):
            raise FramingError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(status_line[9:12])
        if status == 101:
            raise FramingError("upstream switched protocols")
        if 100 <= status < 200:   # interim: the final answer follows
            start = end + 4
            continue
        break
    headers = {}
    for line in head[1:]:
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or not name or name != name.strip():
            raise FramingError(f"malformed header line {line[:80]!r}")
        value = value.strip()
        if name in headers and name in (b"content-length", b"transfer-encoding"):
            if name == b"content-length" and headers[name] != value:
                raise FramingError("conflicting Content-Length headers")
            value = headers[name] + b", " + value if name == b"transfer-encoding" else value
        headers[name] = value
    keep_alive = headers.get(b"connection", b"").lower() != b"close" and not status_line.startswith(b"HTTP/1.0")
    content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
    start = end + 4
    if head_only or status in (204, 304):   # headers only, whatever Content-Length says
        return status, content_type, b"", keep_alive and len(buffer) == start
    transfer = headers.get(b"transfer-encoding")
    if transfer is not None:
        if b"content-length" in headers or transfer.lower() != b"chunked":
            raise FramingError(f"Transfer-Encoding {transfer[:40]!r} (with Content-Length: "
                               f"{b'content-length' in headers})")
        body, pos = bytearray(), start
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size_field = bytes(buffer[pos:line_end]).split(b";")[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise FramingError(f"bad chunk size {size_field[:20]!r}") from None
            if size == 0:
                if buffer[line_end:line_end + 4] == b"\r\n\r\n":
                    end = line_end + 4
                else:   # trailer fields
                    trailer_end = buffer.find(b"\r\n\r\n", line_end)
                    if trailer_end < 0:
                        return None
                    end = trailer_end + 4
                return status, content_type, bytes(body), keep_alive and len(buffer) == end
            if len(buffer) < line_end + 2 + size + 2:
                return None
            if buffer[line_end + 2 + size:line_end + 4 + size] != b"\r\n":
                raise FramingError("chunk not followed by CRLF")
            body += buffer[line_end + 2:line_end + 2 + size]
            pos = line_end + 2 + size + 2
    if b"content-length" in headers:
        if not headers[b"content-length"].isdigit():
            raise FramingError(f"bad Content-Length {headers[b'content-length'][:20]!r}")
        length = int(headers[b"content-length"])
        if len(buffer) - start < length:
            return None
        return status, content_type, bytes(buffer[start:start + length]), \
            keep_alive and len(buffer) == start + length
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
            except BaseException:   # timed out or cancelled: an answer may still come, to no one
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
