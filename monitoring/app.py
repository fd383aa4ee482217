"""The monitoring sidecar as an aiohttp application: `make_app(config, registry=...)`.

Routes (one port, 8080 by default):
- `/healthz/live`  200 while the process serves.
- `/healthz/ready` 200 only when TF Serving reports the model AVAILABLE and that version's
  baseline is loaded; else 503 with the reason.
- `/metrics`       Prometheus text format (monitoring/metrics.py).
- `POST /v1/feedback` {"request_id": ..., "label": x} or {"request_id": ..., "labels": [...]}
  (one per row of the request) joins ground truth to the logged prediction.
- anything else is proxied to TF Serving's REST API: body, status code and content type come back
  untouched; the sidecar adds an `X-Request-Id` header (the client's own, or a new one) that
  feedback refers to. `:predict` calls are handed to the Observer after the response is built.

The sidecar's own errors are TF Serving-shaped JSON: 413 (body over max_body_bytes), 502
(upstream down), 504 (upstream timeout). Every outcome is counted by `kind`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Callable

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from monitoring import baseline as baseline_io
from monitoring.config import SidecarConfig
from monitoring.feedback import FeedbackStore, UnknownRequest
from monitoring.metrics import SidecarMetrics
from monitoring.observer import Observer, Record
from monitoring.prediction_log import LogWriter
from monitoring.upstream import UpstreamError, UpstreamPool
from monitoring.window import DriftWindow

log = logging.getLogger(__name__)
PREDICT = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?:predict$")
HOP_BY_HOP = frozenset(h.lower() for h in ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
                                           "TE", "Trailers", "Transfer-Encoding", "Upgrade", "Host",
                                           "Content-Length"))
REQUEST_ID = "X-Request-Id"
NOT_FORWARDED = HOP_BY_HOP | {REQUEST_ID.lower()}  # the sidecar sets the request id itself


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Sidecar:
    """State shared by the handlers: served version, its drift window, metrics, observer."""

    def __init__(self, config: SidecarConfig, registry: CollectorRegistry, writer: LogWriter | None = None,
                 clock: Callable[[], float] = time.perf_counter, wall_clock: Callable[[], float] = time.time,
                 load_baseline: Callable = baseline_io.load):
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self.load_baseline = load_baseline
        self.metrics = SidecarMetrics(config.model_name, registry)
        self.feedback = FeedbackStore(config.feedback_remember, config.feedback_window)
        self.served_version: int | None = None
        self.window: DriftWindow | None = None
        self.upstream_available = False
        self.observer = Observer(config.model_name, self.metrics,
                                 writer or LogWriter(config.log_dir, config.log_max_bytes, config.log_backups),
                                 self.feedback, lambda: (self.served_version, self.window), config.queue_size,
                                 frozenset(config.pii_fields))
        self.metrics.watch_drift(lambda: self.window)
        self.metrics.baseline_loaded.set(0)
        self.metrics.upstream_up.set(0)
        self.session: aiohttp.ClientSession | None = None   # status polls
        self.upstream = config.upstream.rstrip("/")
        self.upstream_pool = UpstreamPool(self.upstream, config.upstream_timeout_s)  # the proxy path

    # --- upstream version and baseline -------------------------------------------------------
    async def poll_upstream(self) -> None:
        """Ask TF Serving which version it serves; load that version's baseline when it changes."""
        url = f"{self.upstream}/v1/models/{self.config.model_name}"
        try:
            async with self.session.get(url) as resp:
                status = await resp.json(content_type=None) if resp.status == 200 else {}
            self.metrics.upstream_up.set(1)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            self.metrics.upstream_up.set(0)
            self.upstream_available = False
            return
        available = [int(v["version"]) for v in status.get("model_version_status", [])
                     if v.get("state") == "AVAILABLE"]
        self.upstream_available = bool(available)
        # A baseline that failed to load is retried on every poll (a push may still be copying it).
        if available and (max(available) != self.served_version or self.window is None):
            await self.switch_version(max(available))

    async def switch_version(self, version: int) -> None:
        try:
            baseline = await asyncio.get_running_loop().run_in_executor(
                None, self.load_baseline, self.config.model_repository, self.config.model_name, version)
        except (OSError, ValueError) as err:
            if version != self.served_version:  # log once per version, not once per poll
                log.error("version %d is served but its baseline cannot be loaded: %s", version, err)
            self.served_version, self.window = version, None
            self.metrics.baseline_loaded.set(0)
            self.metrics.model_version.set(version)
            return
        self.window = DriftWindow(baseline, self.config.window_rows)  # a new model starts a new window
        self.served_version = version
        self.metrics.model_version.set(version)
        self.metrics.model_pushed.set(baseline.pushed_at)
        self.metrics.baseline_loaded.set(1)
        log.info("serving %s version %d; baseline loaded (%d features)", self.config.model_name, version,
                 len(baseline.features))

    async def poll_forever(self) -> None:
        while True:
            try:
                await self.poll_upstream()
            except Exception:  # keep polling whatever happens
                log.exception("upstream poll failed")
            await asyncio.sleep(self.config.version_poll_s)

    def ready(self) -> tuple[bool, str]:
        if not self.upstream_available:
            return False, f"model {self.config.model_name} not AVAILABLE at {self.upstream}"
        if self.window is None:
            return False, f"baseline of version {self.served_version} not loaded"
        return True, f"serving version {self.served_version}"

    # --- handlers ----------------------------------------------------------------------------
    async def proxy(self, request: web.Request) -> web.Response:
        start = self.clock()
        metrics = self.metrics
        request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            metrics.errors["too_large"].inc()
            return self._finish(json_error(413, f"request body larger than {self.config.max_body_bytes} bytes"), start)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED]
        headers.append((REQUEST_ID, request_id))
        upstream_start = self.clock()
        try:
            status, content_type, payload = await self.upstream_pool.request(request.method, request.path_qs, body,
                                                                             headers)
        except asyncio.TimeoutError:
            metrics.upstream_duration.observe(self.clock() - upstream_start)
            metrics.errors["upstream_timeout"].inc()
            return self._finish(json_error(504, f"upstream {self.upstream} did not answer within "
                                                f"{self.config.upstream_timeout_s}s"), start)
        except UpstreamError as err:
            metrics.errors["upstream_down"].inc()
            return self._finish(json_error(502, f"upstream {self.upstream} unreachable: {err}"), start)
        metrics.upstream_duration.observe(self.clock() - upstream_start)
        response = web.Response(body=payload, status=status, headers={"Content-Type": content_type,
                                                                      REQUEST_ID: request_id})
        if status >= 400:
            self._count_error(status, body)
        match = PREDICT.match(request.path) if request.method == "POST" else None
        if match and match["name"] == self.config.model_name:
            self.observer.submit(Record(self.wall_clock(), request_id,
                                        int(match["version"]) if match["version"] else None,
                                        body, status, payload, self.clock() - start))
        return self._finish(response, start)

    def _finish(self, response: web.Response, start: float) -> web.Response:
        self.metrics.request(response.status).inc()
        self.metrics.request_duration.observe(self.clock() - start)
        return response

    def _count_error(self, status: int, body: bytes) -> None:
        errors = self.metrics.errors
        if status == 404:
            errors["unknown_model"].inc()
        elif status == 413:
            errors["too_large"].inc()
        elif 400 <= status < 500:
            try:  # error path only: the body is parsed to tell bad JSON from other bad requests
                json.loads(body)
                errors["bad_request"].inc()
            except (ValueError, UnicodeDecodeError):
                errors["bad_json"].inc()
        else:
            errors["upstream_error"].inc()

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready_handler(self, request: web.Request) -> web.Response:
        ok, reason = self.ready()
        return web.json_response({"status": "ready" if ok else "not ready", "reason": reason},
                                 status=200 if ok else 503)

    async def metrics_handler(self, request: web.Request) -> web.Response:
        payload = await asyncio.get_running_loop().run_in_executor(None, generate_latest, self.metrics.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def feedback_handler(self, request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return json_error(413, "feedback body too large")
        except (ValueError, UnicodeDecodeError) as err:
            return json_error(400, f"feedback: JSON Parse error: {err}")
        if not isinstance(payload, dict) or not isinstance(payload.get("request_id"), str):
            return json_error(400, 'feedback: expected {"request_id": str, "label": x} or {"request_id": str, "labels": [...]}')
        labels = payload.get("labels", [payload["label"]] if "label" in payload else None)
        if not isinstance(labels, list) or not labels:
            return json_error(400, "feedback: 'label' or a non-empty 'labels' list is required")
        try:
            joined, accuracy = self.feedback.join(payload["request_id"], labels)
        except UnknownRequest:
            return json_error(404, f"feedback: unknown request_id {payload['request_id']!r} "
                                   "(not logged yet, or older than feedback_remember requests)")
        except ValueError as err:
            return json_error(400, f"feedback: {err}")
        self.metrics.feedback.inc(joined)
        if accuracy is not None:
            self.metrics.live_accuracy.set(accuracy)
        return web.json_response({"joined": joined, "live_accuracy": accuracy})


SIDECAR = web.AppKey("sidecar", Sidecar)


def make_app(config: SidecarConfig, registry: CollectorRegistry = REGISTRY, writer: LogWriter | None = None,
             clock: Callable[[], float] = time.perf_counter, wall_clock: Callable[[], float] = time.time,
             load_baseline: Callable = baseline_io.load) -> web.Application:
    sidecar = Sidecar(config, registry, writer, clock, wall_clock, load_baseline)
    app = web.Application(client_max_size=config.max_body_bytes)
    app[SIDECAR] = sidecar
    app.router.add_get("/healthz/live", sidecar.live)
    app.router.add_get("/healthz/ready", sidecar.ready_handler)
    app.router.add_get("/metrics", sidecar.metrics_handler)
    app.router.add_post("/v1/feedback", sidecar.feedback_handler)
    app.router.add_route("*", "/{tail:.*}", sidecar.proxy)

    async def start(app: web.Application) -> None:
        sidecar.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=config.upstream_timeout_s),
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",))
        sidecar.observer.start()
        await sidecar.poll_upstream()  # know the served version before the first request if we can
        app["poller"] = asyncio.create_task(sidecar.poll_forever())

    async def stop(app: web.Application) -> None:
        app["poller"].cancel()
        await sidecar.session.close()
        sidecar.upstream_pool.close()
        await asyncio.get_running_loop().run_in_executor(None, sidecar.observer.stop)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app
