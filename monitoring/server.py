"""Serving the sidecar app: listening sockets, client timeouts, JSON errors, a clean stop.

aiohttp's connection handler is extended in three ways:
- plain predict requests (monitoring/fastpath.py) on the predictions port take the short way:
  read from the connection's bytes, sent to `Sidecar.forward`, answered with one write. The
  first request that is not plain hands the connection, and everything after, to aiohttp. A
  connection is answered in order either way: while a request of the short way is in flight,
  what comes next waits in a buffer (reading pauses beyond MAX_WAITING bytes);
- a header timeout: a connection whose request line and headers are not complete within
  `header_timeout_s` of their first byte is closed; a new connection that sends nothing is
  closed after `idle_timeout_s`, as one idle between requests is;
- a cap on open connections (`max_connections`): one more is answered 503 and closed;
- a connection older than `connection_max_age_s` gets `Connection: close` on its next answer,
  so kept-alive clients reconnect and a Service spreads them over replicas added since;
- errors aiohttp answers itself (a malformed request line or header, a body that does not
  decode as its Content-Encoding says) are TF Serving-shaped JSON like the sidecar's own, and
  counted, instead of text/plain.

`run(config)` serves until SIGTERM or SIGINT, then answers `closing_s` more with `Connection:
close` on every answer (kept-alive clients leave after their answer rather than finding their
connection closed under their next request), stops accepting, lets requests in flight finish,
drains the observer, closes and ships the prediction log (monitoring/app.py), and returns: a
second signal during the stop is ignored rather than turned into tracebacks.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from flywheel import serving_protocol
from monitoring import fastpath
from monitoring.app import SIDECAR, Sidecar, error_answer, make_app
from monitoring.config import SidecarConfig

log = logging.getLogger(__name__)
MAX_WAITING = 1 << 20   # bytes received on a connection while its short-way request is in flight


class _Handler(RequestHandler):
    def __init__(self, manager, *, header_timeout: float, on_error, sidecar: Sidecar | None, **kwargs):
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._on_error = on_error
        self._head_timer: asyncio.TimerHandle | None = None
        self._first_byte_timer: asyncio.TimerHandle | None = None
        self._sidecar = sidecar
        self._short = sidecar is not None     # still taking the short way
        self._waiting = b""                   # received while a short-way request is in flight
        self._in_flight: asyncio.Task | None = None
        self._paused = False
        self._idle_timer: asyncio.TimerHandle | None = None   # the keep-alive timeout while short
        self._close_after = float("inf")      # loop time from which answers close the connection

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._manager.open_connections += 1
        if self._manager.open_connections > self._manager.max_connections:
            if self._sidecar is not None:
                self._sidecar.metrics.request(503).inc()
                self._sidecar.metrics.errors["overloaded"].inc()
            transport.write(fastpath.response(*error_answer(
                503, f"sidecar busy: {self._manager.max_connections} connections open", [
                    ("Retry-After", "1"), ("Connection", "close")])))
            self.force_close()
            transport.close()
            return
        self._close_after = self._loop.time() + self._manager.connection_max_age
        # Nothing received yet: idle like a kept-alive connection between requests (the short
        # way's own timers, and aiohttp's, start with a first request), so a connection that
        # never sends a byte does not stay open.
        self._first_byte_timer = self._loop.call_later(self._keepalive_timeout, self._head_expired)
        sidecar = self._sidecar
        if sidecar is not None and sidecar.split_ports:   # the short way serves predictions only
            sockname = transport.get_extra_info("sockname")
            self._short = isinstance(sockname, tuple) and sockname[1] == sidecar.config.port

    def data_received(self, data: bytes) -> None:
        if self._first_byte_timer is not None:   # from now on the header timeout applies
            self._first_byte_timer.cancel()
            self._first_byte_timer = None
        if self._short and not (self._force_close or self._close):
            if self._in_flight is not None:
                self._waiting += data
                if len(self._waiting) > MAX_WAITING and not self._paused:
                    self._paused = True
                    self.transport.pause_reading()
                return
            if self._waiting:
                data, self._waiting = self._waiting + data, b""
            found = fastpath.parse(data, self._sidecar.config.monitoring.max_body_bytes)
            if found is not None:
                request, self._waiting = found
                self._stop_idle_timer()
                self._stop_head_timer()
                self._in_flight = self._loop.create_task(self._answer(request))
                return
            self._short = False   # aiohttp's from here on, its keep-alive timer included
            self._stop_idle_timer()
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
            self._keepalive_handle = self._loop.call_at(self._next_keepalive_close_time, self._process_keepalive)
        super().data_received(data)
        self._watch_head()

    async def _answer(self, request: fastpath.Plain) -> None:
        sidecar = self._sidecar
        start = sidecar.clock()
        held = sidecar.enter(len(request.body), len(request.body))
        try:
            if isinstance(held, tuple):
                status, message, headers = held
                status, content_type, body, headers = error_answer(status, message, (headers or {}).items())
                sidecar.log_refusal("POST", request.path, status, start)
            else:
                try:
                    status, content_type, body, headers = await sidecar.forward(
                        "POST", request.path, request.path_qs, request.headers, request.body, start)
                finally:
                    sidecar.leave(held)
            answer = fastpath.response(status, content_type, body, headers)
        except Exception:   # as aiohttp does with a handler's exception: a JSON 500, and the connection closed
            log.exception("request to %s failed", request.path)
            status = 500
            self._on_error(status)
            self._in_flight = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(fastpath.response(*error_answer(500, HTTPStatus(500).phrase,
                                                                     [("Connection", "close")])))
            self.force_close()
            return
        sidecar.finished(status, start)
        self._in_flight = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.last_answer():
            self.transport.write(fastpath.response(status, content_type, body, [*headers, ("Connection", "close")]))
            self.force_close()
            return
        self.transport.write(answer)
        self._idle_timer = self._loop.call_later(self._keepalive_timeout, self._idle_expired)
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        if self._waiting:   # pipelined: the next request is already here
            waiting, self._waiting = self._waiting, b""
            self.data_received(waiting)

    def last_answer(self) -> bool:
        """Whether the answer being sent is this connection's last: the sidecar is stopping, or
        the connection has reached its maximum age."""
        return (self._sidecar is not None and self._sidecar.closing) or self._loop.time() >= self._close_after

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if self._short and self._in_flight is None:
            self.force_close()

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _process_keepalive(self) -> None:
        if self._short:   # the short way keeps its own time (_idle_timer)
            self._keepalive_handle = None
            return
        super()._process_keepalive()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        self._short = False
        if self._in_flight is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._in_flight), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        await super().shutdown(timeout)

    def _watch_head(self) -> None:
        if self._messages or self._request_in_progress or self._force_close:
            self._stop_head_timer()
        elif self._head_timer is None:
            # Part of a request head arrived and no request came out of it yet.
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self._messages and not self._request_in_progress and self._in_flight is None:
            self.force_close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._first_byte_timer is not None:
            self._first_byte_timer.cancel()
            self._first_byte_timer = None

    def connection_lost(self, exc) -> None:
        if self._manager is not None:
            self._manager.open_connections -= 1
        self._stop_idle_timer()
        self._stop_head_timer()
        super().connection_lost(exc)

    def handle_error(self, request, status: int = 500, exc=None, message=None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        self._on_error(status)
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        detail = message or (str(exc) if exc is not None and status < 500 else "")
        text = json.dumps(serving_protocol.error_body(f"{phrase}: {detail}" if detail else phrase))
        response = web.Response(status=status, text=text, content_type="application/json")
        response.force_close()
        return response


class _Server(web.Server):
    header_timeout = 10.0
    max_connections = 4096
    connection_max_age = float("inf")
    open_connections = 0
    on_error = staticmethod(lambda status: None)
    sidecar: Sidecar | None = None

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, header_timeout=self.header_timeout, on_error=self.on_error,
                        sidecar=self.sidecar, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        sidecar = self.app[SIDECAR]
        server.header_timeout = sidecar.config.monitoring.header_timeout_s
        server.max_connections = sidecar.config.monitoring.max_connections
        server.connection_max_age = sidecar.config.monitoring.connection_max_age_s

        def count(status: int) -> None:
            sidecar.metrics.request(status).inc()
            sidecar.metrics.errors["bad_request" if status < 500 else "internal"].inc()
        server.on_error = count
        server.sidecar = sidecar
        return server


def ports(config: SidecarConfig) -> list[int]:
    return sorted({config.port, config.feedback_port or config.port, config.metrics_port or config.port})


async def _close_when_last(request: web.Request, response: web.StreamResponse) -> None:
    if request.app[SIDECAR].closing or request.protocol.last_answer():
        response.force_close()   # this closes the connection after the answer; the headers are made already:
        response.headers["Connection"] = "close"


async def start(app: web.Application, config: SidecarConfig) -> web.AppRunner:
    """Listen on every configured port; returns the runner (`await runner.cleanup()` stops)."""
    mon = config.monitoring
    app.on_response_prepare.append(_close_when_last)
    runner = _Runner(app, access_log=None, keepalive_timeout=mon.idle_timeout_s,
                     shutdown_timeout=mon.upstream_timeout_s + mon.body_timeout_s)
    await runner.setup()
    try:
        for port in ports(config):
            await web.TCPSite(runner, config.host, port, backlog=1024).start()
    except BaseException:   # e.g. the port is taken: stop what start-up began (its tasks, the observer)
        await runner.cleanup()
        raise
    return runner


def run(config: SidecarConfig) -> int:
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:  # uvloop is optional: plain asyncio works, a little slower
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("%s: stopping (draining requests, the observer and the prediction log)",
                     signal.Signals(signum).name)
        stop.set()

    async def main() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        app = make_app(config)
        runner = await start(app, config)
        # What is here now (modules, the app, the first baseline) lives as long as the process:
        # out of the collector's sight, a full collection scans only what came later (measured:
        # from about 45 ms, a stall every request in flight waits out, to a few).
        gc.freeze()
        log.info("sidecar for %s on %s port(s) %s -> %s", config.model_name, config.host,
                 ",".join(map(str, ports(config))), config.upstream)
        await stop.wait()
        app[SIDECAR].closing = True
        await asyncio.sleep(config.monitoring.closing_s)
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):   # stopping already: later signals change nothing
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)

    try:
        loop.run_until_complete(main())
    except OSError as err:   # cannot listen: say where, exit non-zero
        log.error("cannot listen on %s port(s) %s: %s", config.host, ",".join(map(str, ports(config))),
                  err.strerror or err)
        return 1
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    return 0
