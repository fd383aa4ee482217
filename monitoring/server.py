"""Serving the sidecar app: listening sockets, client timeouts, JSON errors, a clean stop.

aiohttp's connection handler is extended in two ways:
- a header timeout: a connection whose request line and headers are not complete within
  `header_timeout_s` of their first byte is closed (aiohttp's keep-alive timer covers a
  connection that sends nothing; `idle_timeout_s`);
- errors aiohttp answers itself (a malformed request line or header, a body that does not
  decode as its Content-Encoding says) are TF Serving-shaped JSON like the sidecar's own, and
  counted, instead of text/plain.

`run(config)` serves until SIGTERM or SIGINT, then stops accepting, lets requests in flight
finish, drains the observer, closes and ships the prediction log (monitoring/app.py), and
returns: a second signal during the stop is ignored rather than turned into tracebacks.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from monitoring.app import SIDECAR, make_app
from monitoring.config import SidecarConfig

log = logging.getLogger(__name__)


class _Handler(RequestHandler):
    def __init__(self, manager, *, header_timeout: float, on_error, **kwargs):
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._on_error = on_error
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages or self._request_in_progress or self._force_close:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        elif data and self._head_timer is None:
            # Part of a request head arrived and no request came out of it yet.
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self._messages and not self._request_in_progress:
            self.force_close()

    def connection_lost(self, exc) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def handle_error(self, request, status: int = 500, exc=None, message=None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        self._on_error(status)
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        detail = message or (str(exc) if exc is not None and status < 500 else "")
        text = json.dumps({"error": f"{phrase}: {detail}" if detail else phrase})
        response = web.Response(status=status, text=text, content_type="application/json")
        response.force_close()
        return response


class _Server(web.Server):
    header_timeout = 10.0
    on_error = staticmethod(lambda status: None)

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, header_timeout=self.header_timeout, on_error=self.on_error,
                        **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        sidecar = self.app[SIDECAR]
        server.header_timeout = sidecar.config.monitoring.header_timeout_s

        def count(status: int) -> None:
            sidecar.metrics.request(status).inc()
            sidecar.metrics.errors["bad_request" if status < 500 else "internal"].inc()
        server.on_error = count
        return server


def ports(config: SidecarConfig) -> list[int]:
    return sorted({config.port, config.feedback_port or config.port, config.metrics_port or config.port})


async def start(app: web.Application, config: SidecarConfig) -> web.AppRunner:
    """Listen on every configured port; returns the runner (`await runner.cleanup()` stops)."""
    mon = config.monitoring
    runner = _Runner(app, access_log=None, keepalive_timeout=mon.idle_timeout_s,
                     shutdown_timeout=mon.upstream_timeout_s + mon.body_timeout_s)
    await runner.setup()
    for port in ports(config):
        await web.TCPSite(runner, config.host, port, backlog=1024).start()
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
        runner = await start(make_app(config), config)
        log.info("sidecar for %s on %s port(s) %s -> %s", config.model_name, config.host,
                 ",".join(map(str, ports(config))), config.upstream)
        await stop.wait()
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):   # stopping already: later signals change nothing
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)

    try:
        loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    return 0
