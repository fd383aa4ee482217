"""The monitoring sidecar as an aiohttp application: `make_app(config, registry=...)`.

Routes (all on `port` unless `feedback_port` / `metrics_port` give them their own, so a
NetworkPolicy can admit each kind of client to its own port):
- `/healthz/live`  200 while the process serves (every port).
- `/healthz/ready` 200 only when TF Serving reports the model AVAILABLE, the last
  `ready_after_failures` upstream calls did not all fail, and that version's baseline is loaded;
  else 503 with the reason (every port).
- `/metrics`       Prometheus text format (monitoring/metrics.py).
- `POST /v1/feedback` labels for a logged prediction (monitoring/feedback.py): 200 when joined
  here, 202 when recorded for the replica that served it, 4xx with a JSON reason otherwise.
  With a token configured it needs `Authorization: Bearer <token>`; with
  feedback_token_required and no token set, it is refused (503).
- anything else is proxied to TF Serving's REST API: body, status code and content type come
  back untouched; the sidecar adds `X-Request-Id` (the client's own when it is a plain token of
  at most 256 characters, else 128 random bits) that feedback refers to. A `:predict` without a
  version is sent to the version the sidecar knows TF Serving serves (`/versions/N:predict`), so
  the version logged is the version that answered; if that version has just been unloaded, the
  sidecar asks TF Serving again and retries once. Requests may name features by the training
  file's column names: they are renamed to the model's signature keys before TF Serving sees them.

The sidecar's own errors are TF Serving-shaped JSON ({"error": ...}): 401, 404 (no route),
408 (body too slow), 413 (body over max_body_bytes, after Content-Encoding is undone), 415 (an
encoding other than gzip/deflate), 417 (an expectation other than 100-continue), 502 (upstream
down), 503 (over the concurrency or in-flight byte cap, with Retry-After), 504 (upstream
timeout). Every outcome is counted by `kind`.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import time
from typing import Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from flywheel import serving_logs, serving_protocol
from flywheel.drift import joint as joint_drift
from flywheel.redaction import Redactor
from monitoring import baseline as baseline_io
from monitoring import metrics as m
from monitoring import routing
from monitoring.baseline import Baseline
from monitoring.config import SidecarConfig, read_token
from monitoring.feedback import FeedbackError, FeedbackLog, FeedbackState, GroupCommit, parse_body
from monitoring.fleet import FleetDrift, FleetView
from monitoring.lookup import ANSWERED_BY, Lookup
from monitoring.online_features import OnlineFeatures
from monitoring.observer import Observer, Record
from monitoring.segments import REPEAT_LOG_S, SegmentWriter, Shipper
from monitoring.upstream import UpstreamError, UpstreamPool
from monitoring.window import DriftWindow, decide

log = logging.getLogger(__name__)
PREDICT = serving_protocol.PREDICT_ROUTE
# Hop-by-hop fields (RFC 9110 7.6.1), and the framing of the client's message: the sidecar
# frames what it sends itself (Host, Content-Length). `Expect` is answered by the sidecar
# (`Sidecar.expect`), never forwarded: the body is already read, and an upstream's interim
# `100 Continue` would be one answer too many on a pooled connection.
HOP_BY_HOP = frozenset(h.lower() for h in ("Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
                                           "Proxy-Authorization", "TE", "Trailer", "Trailers",
                                           "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Expect"))
REQUEST_ID = "X-Request-Id"
# The sidecar sets the request id itself; the body it forwards is decoded (Content-Encoding
# undone) and TF Serving's answer is read by the sidecar, so it must come back unencoded; a
# client's token is for the sidecar.
NOT_FORWARDED = HOP_BY_HOP | {REQUEST_ID.lower(), "content-encoding", "accept-encoding", "authorization"}
ENCODINGS = frozenset(("", "identity", "gzip", "x-gzip", "deflate"))
CLIENT_REQUEST_ID = re.compile(r"[!-~]{1,256}")
FEEDBACK = serving_protocol.FEEDBACK_PATH
HEALTH = ("/healthz/live", "/healthz/ready")


def json_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response(serving_protocol.error_body(message), status=status, headers=headers)


def _closing(response: web.Response) -> web.Response:
    """A refusal given before the request's body was all read: the connection is closed after it,
    since what the client sends next may be the rest of that body."""
    response.force_close()
    return response


class Held:
    """Body bytes a request in flight holds of the max_in_flight_bytes budget."""
    __slots__ = ("bytes",)

    def __init__(self):
        self.bytes = 0


def error_answer(status: int, message: str, headers=()) -> tuple[int, str, bytes, list[tuple[str, str]]]:
    """json_error as `forward` answers: (status, content type, body, headers)."""
    return status, "application/json", serving_protocol.error_bytes(message), list(headers)


class Sidecar:
    """State shared by the handlers: served version and its baseline and window, metrics, the
    observer, the logs and the fleet's view."""

    def __init__(self, config: SidecarConfig, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.perf_counter, wall_clock: Callable[[], float] = time.time,
                 load_baseline: Callable = baseline_io.load):
        self.config = config
        mon = config.monitoring
        self.clock = clock
        self.wall_clock = wall_clock
        self.load_baseline = load_baseline
        self.metrics = m.SidecarMetrics(config.model_name, registry)
        self.instance = config.instance
        self.destination = config.log_destination
        self.feedback = FeedbackState(mon.feedback_remember, mon.feedback_memory_bytes, mon.feedback_window,
                                      mon.feedback_pending_s)
        self.feedback_log = FeedbackLog(self.destination, self.instance, wall_clock)
        self.commit = GroupCommit(self.feedback_log)
        self.writer = SegmentWriter(mon.log_dir, self.instance, mon.segment_max_bytes, mon.segment_max_age_s,
                                    wall_clock)
        self.shipper = Shipper(self.writer, self.destination, mon.local_log_max_bytes, mon.ship_retry_s, wall_clock)
        self.fleet = FleetDrift(self.destination, self.instance, mon.fleet_stale_s, wall_clock)
        self.fleet_view: FleetView | None = None
        self.served_version: int | None = None
        self.baseline: Baseline | None = None
        self.window: DriftWindow | None = None
        self.upstream_available = False
        self.failures = 0                       # consecutive failed upstream calls
        self.upstream_up = False
        self.in_flight = 0
        self.closing = False                    # stopping: every answer says `Connection: close`
        self.in_flight_bytes = 0
        self._loading = False
        self._failed_version: int | None = None
        self._rename_needles: list[bytes] = []
        self._decisions: tuple = (None, [], [])  # (window generation, features, predictions)
        self._joint_decision: tuple = (None, None)   # (window generation, JointDrift)
        self.observer = Observer(config.model_name, self.instance, self.metrics, self.writer, self.feedback,
                                 lambda: (self.baseline, self.window), Redactor(mon.pii_fields, mon.pii_patterns),
                                 mon.queue_size, mon.queue_bytes, mon.linger_s, mon.window_rows_per_request)
        self.metrics.watch(self.state_metrics)
        self.lookup = Lookup(config.model_repository, config.model_name, config.batch, self.metrics, wall_clock)
        self.online_features = OnlineFeatures(config.feature_store, self.metrics, clock)
        self.metrics.baseline_loaded.set(0)
        self.metrics.upstream_up.set(0)
        self.metrics.ready.set_function(lambda: float(self.ready()[0]))
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.metrics.in_flight_bytes.set_function(lambda: self.in_flight_bytes)
        # Read at scrape time (0 until the first labelled row), not left as of the previous scrape.
        self.metrics.live_accuracy.set_function(lambda: self.feedback.accuracy() or 0.0)
        self.upstream = config.upstream.rstrip("/")
        self.upstream_pool = UpstreamPool(self.upstream, mon.upstream_timeout_s, mon.connect_timeout_s)
        self.split_ports = bool(config.feedback_port or config.metrics_port)
        self.token = config.token
        self.read_token()
        self.routing = routing.Router(config.release, config.model_repository, config.model_name, registry)

    # --- upstream version and baseline -------------------------------------------------------
    def _upstream_ok(self) -> None:
        if self.failures or not self.upstream_up:   # the request path pays for a change only
            self.failures, self.upstream_up = 0, True
            self.metrics.upstream_up.set(1)

    def _upstream_failed(self) -> None:
        self.failures += 1
        self.upstream_up = False
        self.metrics.upstream_up.set(0)

    async def refresh_versions(self) -> int | None:
        """Ask TF Serving which versions are AVAILABLE; route to the newest from now on."""
        path = serving_protocol.model_path(self.config.model_name)
        try:
            status, _, payload = await self.upstream_pool.request("GET", path, b"", [])
            document = json.loads(payload) if status == 200 else {}
        except (UpstreamError, asyncio.TimeoutError, ValueError, RecursionError):
            self._upstream_failed()
            self.upstream_available = False
            return None
        self._upstream_ok()
        versions = document.get("model_version_status", []) if isinstance(document, dict) else []
        available = [int(v["version"]) for v in versions if isinstance(v, dict) and v.get("state") == "AVAILABLE"
                     and str(v.get("version", "")).isdigit()]
        self.upstream_available = bool(available)
        if available:
            self.served_version = self.routing.production(available)   # the production label, else the newest
            self.metrics.model_version.set(self.served_version)
        return self.served_version if available else None

    async def poll_upstream(self) -> None:
        """Refresh the served version; load its baseline when it changed (one load at a time; a
        baseline that failed to load is tried again on every poll: a push may still be copying it)."""
        version = await self.refresh_versions()
        if version is None or (self.baseline is not None and self.baseline.version == version):
            return
        if self._loading:
            return
        self._loading = True
        try:
            await self.switch_version(version)
        finally:
            self._loading = False

    async def switch_version(self, version: int) -> None:
        mon = self.config.monitoring
        try:
            baseline = await asyncio.get_running_loop().run_in_executor(
                None, self.load_baseline, self.config.model_repository, self.config.model_name, version,
                self.config.drift.quantiles, mon.export_levels)
        except (OSError, ValueError) as err:
            if version != self._failed_version:  # log once per version, not once per poll
                log.error("version %d is served but its baseline cannot be loaded: %s", version, err)
                self._failed_version = version
            self.baseline, self.window = None, None
            self.metrics.baseline_loaded.set(0)
            return
        # A new model, a new window; drift counts only rows that this version answered.
        self.baseline, self.window = baseline, DriftWindow(baseline, mon.window_rows)
        self._rename_needles = [json.dumps(c, ensure_ascii=a).encode() for c in baseline.column_to_key
                                for a in (True, False)]
        self.fleet_view = None
        self.metrics.model_pushed.set(baseline.pushed_at)
        self.metrics.schema_version.set(int(baseline.metadata.get("schema_version") or 0))
        self.metrics.baseline_loaded.set(1)
        log.info("serving %s version %d; baseline loaded (%d drift inputs)", self.config.model_name, version,
                 len(baseline.inputs))

    def ready(self) -> tuple[bool, str]:
        if self.failures >= self.config.monitoring.ready_after_failures:
            return False, f"the last {self.failures} calls to TF Serving at {self.upstream} failed"
        if not self.upstream_available:
            return False, f"model {self.config.model_name} not AVAILABLE at {self.upstream}"
        if self.window is None or self.baseline.version != self.served_version:
            return False, f"baseline of version {self.served_version} not loaded"
        return True, f"serving version {self.served_version}"

    # --- the proxy ---------------------------------------------------------------------------
    async def _read_body(self, request: web.Request, held: "Held") -> bytes | web.Response:
        """The body, decoded, its bytes counted in the in-flight budget as they arrive (`held`),
        not as declared: an announced 4 MiB that never comes costs nothing. A body slower than
        min_body_rate_bytes_s on average after body_grace_s, or not whole within body_timeout_s,
        is cut off (408); a refusal before the body is all read closes the connection."""
        mon = self.config.monitoring
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ENCODINGS:
            self.metrics.errors["unsupported_encoding"].inc()
            return json_error(415, f"Content-Encoding {encoding!r} is not supported (gzip, deflate or none)")
        content = request.content
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunks, size = [], 0
        try:
            while True:
                if content.at_eof():   # the whole body is read (often it came with the head: no timer)
                    break
                by_rate = mon.body_grace_s + size / mon.min_body_rate_bytes_s
                async with asyncio.timeout_at(started + min(mon.body_timeout_s, by_rate)):
                    chunk = await content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > mon.max_body_bytes:
                    self.metrics.errors["too_large"].inc()
                    return _closing(json_error(413, f"request body larger than {mon.max_body_bytes} bytes"))
                refusal = self.hold(held, len(chunk))
                if refusal is not None:
                    return _closing(json_error(*refusal))
                chunks.append(chunk)
        except asyncio.TimeoutError:
            self.metrics.errors["body_timeout"].inc()
            if by_rate >= mon.body_timeout_s:
                message = f"request body not received within {mon.body_timeout_s}s"
            else:
                message = (f"request body too slow: {size} bytes in {loop.time() - started:.1f}s (at least "
                           f"{mon.min_body_rate_bytes_s} bytes/s after {mon.body_grace_s}s)")
            return _closing(json_error(408, message))
        except (RequestPayloadError, ValueError, OSError, RuntimeError) as err:   # e.g. not the encoding it says
            self.metrics.errors["bad_request"].inc()
            return _closing(json_error(400, f"request body could not be read: {err}"))
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _renamed(self, body: bytes) -> bytes:
        """Rows that name features by their column names, renamed to the signature keys."""
        baseline = self.baseline
        if baseline is None or not baseline.column_to_key or not any(n in body for n in self._rename_needles):
            return body
        renames = baseline.column_to_key
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return body   # TF Serving will say what is wrong with it
        if not isinstance(document, dict):
            return body
        if isinstance(document.get("instances"), list):
            document["instances"] = [{renames.get(k, k): v for k, v in row.items()} if isinstance(row, dict) else row
                                     for row in document["instances"]]
        if isinstance(document.get("inputs"), dict):
            document["inputs"] = {renames.get(k, k): v for k, v in document["inputs"].items()}
        return json.dumps(document).encode()

    def enter(self, declared: int, arrived: int = 0) -> "Held | tuple[int, str, dict | None]":
        """Admit a request within the cap on requests in flight (proxied predictions and feedback
        alike), holding the body bytes that `arrived` with it: -> what it holds (more with `hold`,
        all given back with `leave`), or (status, message, headers) of the refusal, 413 or 503."""
        mon = self.config.monitoring
        if declared > mon.max_body_bytes:
            self.metrics.errors["too_large"].inc()
            return 413, f"request body larger than {mon.max_body_bytes} bytes", None
        if self.in_flight >= mon.max_in_flight:
            self.metrics.errors["overloaded"].inc()
            return 503, f"sidecar busy: {self.in_flight} requests in flight (limit {mon.max_in_flight})", \
                {"Retry-After": "1"}
        held = Held()
        self.in_flight += 1
        refusal = self.hold(held, arrived)
        if refusal is not None:
            self.leave(held)
        return refusal or held

    def hold(self, held: "Held", size: int) -> tuple[int, str, dict] | None:
        """Count `size` more body bytes of a request in flight; over max_in_flight_bytes, the 503."""
        mon = self.config.monitoring
        if self.in_flight_bytes + size > mon.max_in_flight_bytes:
            self.metrics.errors["overloaded"].inc()
            return 503, (f"sidecar busy: {self.in_flight_bytes} bytes of request bodies in flight "
                         f"(limit {mon.max_in_flight_bytes})"), {"Retry-After": "1"}
        held.bytes += size
        self.in_flight_bytes += size
        return None

    def leave(self, held: "Held") -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= held.bytes

    async def admitted(self, request: web.Request, handle: Callable) -> web.Response:
        """Run `handle(request, held)` within the caps (`enter`); over a cap, its refusal at once."""
        held = self.enter(request.content_length or 0)
        if isinstance(held, tuple):
            return _closing(json_error(*held)) if request.body_exists else json_error(*held)
        try:
            return await handle(request, held)
        finally:
            self.leave(held)

    async def proxy(self, request: web.Request) -> web.Response:
        """A proxied request as aiohttp parsed it. Plain predict requests usually come the short
        way instead (monitoring/server.py), straight to `forward`."""
        start = self.clock()
        forwarded = []
        response = await self.admitted(request, lambda r, held: self._proxy(r, held, start, forwarded))
        if not forwarded:
            self.log_refusal(request.method, request.path, response.status, start)
        return self._finish(response, start)

    def log_refusal(self, method: str, path: str, status: int, start: float) -> None:
        """A predict request the sidecar refused itself (413, 503, 408, ...) leaves one log record
        like any answered one (its status, no rows), so written + dropped = answered."""
        match = PREDICT.match(path) if method == "POST" else None
        if match is not None and match["name"] == self.config.model_name:
            self.observer.submit(Record(self.wall_clock(), secrets.token_hex(16), None, b"", status, b"",
                                        self.clock() - start))

    async def _proxy(self, request: web.Request, held: "Held", start: float, forwarded: list) -> web.Response:
        body = await self._read_body(request, held)
        if isinstance(body, web.Response):
            return body
        forwarded.append(True)
        status, content_type, payload, headers = await self.forward(
            request.method, request.path, request.path_qs, request.headers.items(), body, start)
        return web.Response(body=payload, status=status, headers={"Content-Type": content_type, **dict(headers)})

    async def forward(self, method: str, path: str, path_qs: str, request_headers, body: bytes,
                      start: float) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        """Send a request (its body read and decoded) to TF Serving, log a prediction, and return
        what the client gets: (status, content type, body, headers to add)."""
        metrics = self.metrics
        given = ""
        headers = []
        nominated = ()   # fields the client's Connection header names are hop-by-hop too
        for k, v in request_headers:
            lower = k.lower()
            if lower == "x-request-id":
                given = v
            elif lower == "connection":
                nominated += tuple(token.strip().lower() for token in v.split(","))
            elif lower not in NOT_FORWARDED:
                headers.append((k, v))
        if nominated:
            headers = [(k, v) for k, v in headers if k.lower() not in nominated]
        # A new id: 128 random bits (32 hex digits, like a UUID's). Feedback names a prediction by
        # its id, so an id must not be guessable from another: a counter would let anyone who saw
        # one answer post feedback for the next requests before their clients do.
        request_id = given if CLIENT_REQUEST_ID.fullmatch(given) else secrets.token_hex(16)
        headers.append((REQUEST_ID, request_id))
        answer_headers = [(REQUEST_ID, request_id)]
        match = PREDICT.match(path) if method == "POST" else None
        ours = match is not None and match["name"] == self.config.model_name
        version = None
        sent = body
        if ours and self.online_features.enabled:   # entity keys -> the features, as training got them
            completed = await self.online_features.complete(body)
            if completed is not None and completed.refused:
                return error_answer(*completed.refused, answer_headers)
            body = completed.body if completed is not None else body
        if ours:
            found = None if match["version"] or match["label"] else self.lookup.outcome(body, self.served_version)
            if found is not None and found.answer is not None:   # precomputed: answered here, logged as any
                self.observer.submit(Record(self.wall_clock(), request_id, found.version, found.body, 200,
                                            found.answer, self.clock() - start))
                return 200, "application/json", found.answer, answer_headers + [(ANSWERED_BY, "batch")]
            body = found.body if found is not None else body   # the rows without their key, online
            sent = self._renamed(body)
            if match["version"]:
                version = int(match["version"])
            elif not match["label"] and self.served_version is not None:
                version = self.routing.choose(self.served_version)   # production, or the canary for its share
                path_qs = serving_protocol.version_predict_path(match['name'], version)
        for attempt in (0, 1):
            upstream_start = self.clock()
            try:
                status, content_type, payload = await self.upstream_pool.request(method, path_qs, sent, headers)
            except asyncio.TimeoutError:
                metrics.upstream_duration.observe(self.clock() - upstream_start)
                metrics.errors["upstream_timeout"].inc()
                self._upstream_failed()
                answer = error_answer(504, f"upstream {self.upstream} did not answer within "
                                      f"{self.config.monitoring.upstream_timeout_s}s", answer_headers)
                break
            except UpstreamError as err:
                metrics.errors["upstream_down"].inc()
                self._upstream_failed()
                answer = error_answer(502, f"upstream {self.upstream} unreachable: {err}", answer_headers)
                break
            answer = None
            metrics.upstream_duration.observe(self.clock() - upstream_start)
            self._upstream_ok()
            chose = ours and not match["version"] and not match["label"] and version is not None
            if status == 404 and chose and attempt == 0:
                # The version we chose was unloaded after our last poll: ask again, retry once.
                await self.refresh_versions()
                if self.served_version is not None and self.served_version != version:
                    version = self.served_version
                    path_qs = serving_protocol.version_predict_path(match['name'], version)
                    continue
            break
        if answer is not None:   # TF Serving did not answer (502, 504): logged all the same, in short
            if ours:
                self.observer.submit(Record(self.wall_clock(), request_id, None, body, answer[0], b"",
                                            self.clock() - start))
            return answer
        if status >= 400:
            self._count_error(status, payload)
        if ours:
            answered = version if status < 500 and status != 404 else None
            self.observer.submit(Record(self.wall_clock(), request_id, answered, body, status, payload,
                                        self.clock() - start))
            self.routing.observed(answered, status, self.clock() - upstream_start, payload)
            self.routing.mirror(lambda v, b: self._predict_version(v, b, headers), answered, sent, payload, status)
        return status, content_type, payload, answer_headers

    async def _predict_version(self, version: int, body: bytes, headers: list) -> tuple[int, bytes]:
        status, _, payload = await self.upstream_pool.request(
            "POST", serving_protocol.version_predict_path(self.config.model_name, version), body, headers)
        return status, payload

    def _finish(self, response: web.Response, start: float) -> web.Response:
        self.finished(response.status, start)
        return response

    def finished(self, status: int, start: float) -> None:
        self.metrics.request(status).inc()
        self.metrics.request_duration.observe(self.clock() - start)

    def _count_error(self, status: int, payload: bytes) -> None:
        errors = self.metrics.errors
        if status == 404:
            errors["unknown_model"].inc()
        elif status == 413:
            errors["too_large"].inc()
        elif 400 <= status < 500:
            # TF Serving words a body that is not JSON this way; anything else is a bad request.
            errors["bad_json" if b"JSON Parse error" in payload or b"JSON parse error" in payload
                   else "bad_request"].inc()
        else:
            errors["upstream_error"].inc()

    async def expect(self, request: web.Request) -> web.Response | None:
        """`Expect: 100-continue` is the sidecar's to answer (RFC 9110 10.1.1), never forwarded: a
        body the sidecar would refuse (over max_body_bytes) is refused at once, before the client
        sends it; else `100 Continue`. Any other expectation is a JSON 417. A refusal closes the
        connection: the client may or may not send the body it announced."""
        expect = request.headers.get("Expect", "")
        if expect.strip().lower() == "100-continue":
            limit = self.config.monitoring.max_body_bytes
            if (request.content_length or 0) > limit:
                self.metrics.errors["too_large"].inc()
                response = json_error(413, f"request body larger than {limit} bytes")
            else:
                if request.version == (1, 1):
                    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    request.writer.output_size = 0
                return None
        else:
            self.metrics.errors["bad_request"].inc()
            response = json_error(417, f"Expect {expect!r} is not supported (only 100-continue)")
        response.force_close()
        return self._finish(response, self.clock())

    # --- health and metrics ------------------------------------------------------------------
    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready_handler(self, request: web.Request) -> web.Response:
        ok, reason = self.ready()
        return web.json_response({"status": "ready" if ok else "not ready", "reason": reason},
                                 status=200 if ok else 503)

    async def metrics_handler(self, request: web.Request) -> web.Response:
        payload = await asyncio.get_running_loop().run_in_executor(None, generate_latest, self.metrics.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def state_metrics(self) -> dict:
        """Samples of monitoring.metrics.STATE_METRICS, read at scrape time."""
        model = self.config.model_name
        out: dict[str, list] = {name: [] for name in m.STATE_METRICS}
        window, baseline = self.window, self.baseline
        if window is not None:
            generation, rows, summaries = window.summaries()
            if self._decisions[0] != generation:
                self._decisions = (generation, *decide(baseline, summaries, self.config.drift))
            _, features, predictions = self._decisions
            out[m.DRIFT_WINDOW_ROWS].append(([model], rows))
            self._decision_samples(out[m.FEATURE_DRIFT], out[m.PREDICTION_DRIFT], features, predictions)
            self._joint_samples(out[m.JOINT_DRIFT], out[m.JOINT_DRIFT_PAIR], self.joint_decision(window))
            version = str(baseline.version)
            _, exported, missing = window.exported_counts()
            for name, item in window.items.items():
                if item.bins is None:
                    continue
                for label, count, share in zip(item.bins.labels, exported[name], item.bins.reference_share):
                    out[m.DRIFT_VALUES].append(([model, version, name, label], float(count)))
                    out[m.DRIFT_REFERENCE_SHARE].append(([model, version, name, label], float(share)))
                out[m.DRIFT_MISSING].append(([model, version, name], float(missing[name])))
        else:
            out[m.DRIFT_WINDOW_ROWS].append(([model], 0.0))
        view = self.fleet_view
        if view is not None:
            self._decision_samples(out[m.FLEET_FEATURE_DRIFT], out[m.FLEET_PREDICTION_DRIFT], view.features,
                                   view.predictions)
            self._joint_samples(out[m.FLEET_JOINT_DRIFT], out[m.FLEET_JOINT_DRIFT_PAIR], view.joint)
            out[m.FLEET_DRIFT_ROWS].append(([model], float(view.rows)))
            out[m.FLEET_DRIFT_INSTANCES].append(([model], float(view.instances)))
            out[m.FLEET_DRIFT_AGE].append(([model], max(0.0, self.wall_clock() - view.computed_at)))
        counts = self.feedback.counts
        out[m.FEEDBACK_JOINED_ROWS].append(([model], float(counts["joined_rows"])))
        out[m.FEEDBACK_SCORED_ROWS].append(([model], float(counts["scored_rows"])))
        out[m.FEEDBACK_CORRECT_ROWS].append(([model], float(counts["correct_rows"])))
        out[m.FEEDBACK_DUPLICATES].append(([model], float(counts["duplicates"])))
        entries, size = self.feedback.memory()
        out[m.FEEDBACK_MEMORY_ENTRIES].append(([model], float(entries)))
        out[m.FEEDBACK_MEMORY_BYTES].append(([model], float(size)))
        stats = self.shipper.stats
        for outcome in m.SEGMENT_OUTCOMES:
            out[m.LOG_SEGMENTS].append(([outcome], float(stats[outcome])))
        out[m.LOG_SHIPPED_BYTES].append(([], float(stats["bytes"])))
        out[m.LOG_UNSHIPPED_SEGMENTS].append(([], float(self.shipper.unshipped()[0])))
        out[m.LOG_OLDEST_UNSHIPPED].append(([], self.shipper.oldest_unshipped_age()))
        return out

    def joint_decision(self, window: DriftWindow):
        """The joint check on this pod's window, computed again only when the window changed."""
        generation, summary = window.joint_summary()
        if window.joint is None:
            return None
        if self._joint_decision[0] != generation:
            self._joint_decision = (generation, joint_drift.compare_joint(window.joint.profile, summary,
                                                                          self.config.drift))
        return self._joint_decision[1]

    def _joint_samples(self, overall_samples: list, pair_samples: list, result) -> None:
        if result is None:
            return
        model = self.config.model_name
        overall, pairs = m.joint_measures(result)
        overall_samples += [([model, measure], value) for measure, value in overall.items()]
        pair_samples += [([model, pair, measure], value) for pair, values in pairs.items()
                         for measure, value in values.items()]

    def _decision_samples(self, feature_samples: list, prediction_samples: list, features: list,
                          predictions: list) -> None:
        model = self.config.model_name
        for result in features:
            for measure, value in m.decision_measures(result).items():
                feature_samples.append(([model, result.feature, measure], value))
        for result in predictions:
            for measure, value in m.decision_measures(result).items():
                prediction_samples.append(([model, measure], value))

    # --- feedback ----------------------------------------------------------------------------
    def read_token(self) -> None:
        """The token from monitoring.token_file, read again so that a rotated Secret applies."""
        if self.config.monitoring.token_file:
            self.token = read_token(self.config.monitoring.token_file)

    def _authorized(self, request: web.Request) -> bool:
        token = self.token
        if not token:
            return True
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    async def feedback_handler(self, request: web.Request) -> web.Response:
        return await self.admitted(request, self._feedback)

    async def _feedback(self, request: web.Request, held: "Held") -> web.Response:
        outcome = self.metrics.feedback
        if not self.token and self.config.monitoring.feedback_token_required:
            outcome["unavailable"].inc()
            return json_error(503, "feedback needs a bearer token and none is set (the file monitoring.token_file "
                              "names is missing or empty)", {"Retry-After": "60"})
        if not self._authorized(request):
            outcome["unauthorized"].inc()
            return json_error(401, "feedback needs 'Authorization: Bearer <token>'",
                              {"WWW-Authenticate": 'Bearer realm="flywheel-feedback"'})
        body = await self._read_body(request, held)
        if isinstance(body, web.Response):
            outcome["rejected"].inc()
            return body
        baseline = self.baseline
        if baseline is None:
            outcome["unavailable"].inc()
            return json_error(503, "feedback: the served model's metadata is not loaded yet (its label domain)",
                              {"Retry-After": "5"})
        try:
            request_id, labels, indices = parse_body(serving_logs.loads_strict(body), baseline.domain)
            rows = self.feedback.rows_of(request_id)
            if rows is not None and rows != len(labels):
                raise FeedbackError(f"request {request_id} had {rows} row(s); got {len(labels)} label(s)")
        except FeedbackError as err:
            outcome["rejected"].inc()
            return json_error(400, f"feedback: {err}")
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            outcome["rejected"].inc()
            return json_error(400, f"feedback: JSON Parse error: {str(err)[:200]}")
        if not self.feedback.claim(request_id):
            outcome["duplicate"].inc()
            return json_error(409, f"feedback: request {request_id} already has feedback (the first answer stands)")
        record = {"format": serving_logs.FORMAT, "kind": serving_logs.FEEDBACK, "time": self.wall_clock(),
                  "request_id": request_id, "model": self.config.model_name, "pod": self.instance,
                  "feedback_id": self.feedback_log.new_id(), "labels": labels}
        try:
            await self.commit.write(record)
        except OSError as err:
            self.feedback.unclaim(request_id)
            outcome["unavailable"].inc()
            log.error("feedback log write failed: %s", err)
            return json_error(503, f"feedback: not recorded, the feedback log cannot be written ({err}); retry",
                              {"Retry-After": "5"})
        outcome["accepted"].inc()
        joined = self.feedback.join(request_id, indices)
        if joined:
            return web.json_response({"request_id": request_id, "rows": len(labels), "joined": True,
                                      "live_accuracy": self.feedback.accuracy()})
        return web.json_response({"request_id": request_id, "rows": len(labels), "joined": False,
                                  "status": "recorded; the replica that served the request joins it"}, status=202)

    # --- background jobs ---------------------------------------------------------------------
    def read_fleet_feedback(self) -> None:
        baseline = self.baseline
        if baseline is None:
            return
        for record in self.feedback_log.read_new():
            self.feedback.from_fleet(record, baseline.domain)

    def update_fleet(self) -> None:
        baseline, window = self.baseline, self.window
        if baseline is None or window is None:
            return
        _, rows, summaries = window.summaries()
        self.fleet.publish(baseline.version, rows, summaries, window.joint_summary()[1])
        view = self.fleet.collect(baseline)
        if baseline is not self.baseline:
            return   # the served version changed meanwhile
        view.features, view.predictions = decide(baseline, view.summaries, self.config.drift)
        if baseline.joint is not None:
            view.joint = joint_drift.compare_joint(baseline.joint, view.joint_summary, self.config.drift)
        self.fleet_view = view

    def ship(self) -> None:
        self.shipper.ship()

    async def every(self, interval_s: float, job: Callable[[], object], what: str) -> None:
        """Run `job` every interval_s in a worker thread, whatever happens; a failure is logged in
        full the first time, then once every REPEAT_LOG_S with how often it failed meanwhile."""
        loop = asyncio.get_running_loop()
        failed, logged = 0, -REPEAT_LOG_S
        while True:
            await asyncio.sleep(interval_s)
            try:
                await loop.run_in_executor(None, job)
                failed = 0
            except Exception as error:  # the next round retries
                failed += 1
                now = time.monotonic()
                if failed == 1 and now - logged > REPEAT_LOG_S:
                    log.exception("%s failed", what)
                    logged = now
                elif now - logged > REPEAT_LOG_S:
                    log.warning("%s still failing (%d times in a row): %s", what, failed, error)
                    logged = now

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.monitoring.version_poll_s)
            try:
                await self.poll_upstream()
            except Exception:  # keep polling whatever happens
                log.exception("upstream poll failed")

    async def shutdown(self) -> None:
        """Drain, close and ship: what could not be done in time is counted and logged."""
        mon = self.config.monitoring
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(None, self.observer.stop, mon.drain_timeout_s)
        self.writer.close()
        deadline = time.monotonic() + mon.drain_timeout_s
        await loop.run_in_executor(None, lambda: self.shipper.ship(force=True, deadline=deadline))
        segments, records = self.shipper.unshipped()
        self.upstream_pool.close()
        self.online_features.close()
        try:
            self.fleet.withdraw()
        except OSError:
            pass
        stats = self.shipper.stats
        self.stop_summary = {"written": self.observer.written, "dropped": self.observer.dropped, "left": left,
                             "shipped": stats["shipped"], "shipped_bytes": stats["bytes"],
                             "unshipped_segments": segments, "unshipped_records": records, "lost": stats["lost"]}
        log.info("stopped: %d records written, %d dropped (%d still queued at the end); %d segments shipped "
                 "(%d bytes), %d not shipped (%d records), %d lost", self.observer.written, self.observer.dropped,
                 left, stats["shipped"], stats["bytes"], segments, records, stats["lost"])


SIDECAR = web.AppKey("sidecar", Sidecar)
TOKEN_REREAD_S = 30.0   # kubelet refreshes a mounted Secret within about a minute
TASKS = web.AppKey("tasks", list)


def _port_of(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def make_app(config: SidecarConfig, registry: CollectorRegistry = REGISTRY,
             clock: Callable[[], float] = time.perf_counter, wall_clock: Callable[[], float] = time.time,
             load_baseline: Callable = baseline_io.load) -> web.Application:
    sidecar = Sidecar(config, registry, clock, wall_clock, load_baseline)
    mon = config.monitoring
    @web.middleware
    async def json_errors(request: web.Request, handler):
        """aiohttp's own refusals (a target no route takes: `OPTIONS *`, `CONNECT host:port`) as
        JSON like every other error, not its text/plain."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            sidecar.metrics.request(exc.status).inc()
            return json_error(exc.status, f"{exc.reason}: {request.method} {request.raw_path[:200]}",
                              {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")})

    middlewares = [json_errors]
    if sidecar.split_ports:
        feedback_port, metrics_port = config.feedback_port or config.port, config.metrics_port or config.port

        @web.middleware
        async def by_port(request: web.Request, handler):
            """Each kind of client on its own port: a path is served only on its port."""
            port, path = _port_of(request), request.path
            if path in HEALTH:
                return await handler(request)
            wanted = feedback_port if path == FEEDBACK else metrics_port if path == "/metrics" else config.port
            if port != wanted:
                return json_error(404, f"{path} is not served on port {port}")
            return await handler(request)
        middlewares.append(by_port)

    # The body is read by the handlers, with the limit and the timeout they enforce.
    app = web.Application(client_max_size=mon.max_body_bytes, middlewares=middlewares)
    app[SIDECAR] = sidecar
    routes = [("GET", "/healthz/live", sidecar.live), ("GET", "/healthz/ready", sidecar.ready_handler),
              ("GET", "/metrics", sidecar.metrics_handler), ("POST", FEEDBACK, sidecar.feedback_handler),
              ("*", "/{tail:.*}", sidecar.proxy)]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler, expect_handler=sidecar.expect)

    async def start(app: web.Application) -> None:
        sidecar.observer.start()
        await asyncio.get_running_loop().run_in_executor(None, sidecar.routing.refresh_labels)
        await sidecar.poll_upstream()  # know the served version before the first request if we can
        app[TASKS] = [asyncio.create_task(sidecar.poll_forever()),
                      asyncio.create_task(sidecar.every(1.0, sidecar.ship, "shipping the prediction log")),
                      asyncio.create_task(sidecar.every(mon.feedback_poll_s, sidecar.read_fleet_feedback,
                                                        "reading the fleet's feedback")),
                      asyncio.create_task(sidecar.every(mon.fleet_interval_s, sidecar.update_fleet,
                                                        "the fleet's drift")),
                      asyncio.create_task(sidecar.every(TOKEN_REREAD_S, sidecar.read_token, "reading the token")),
                      asyncio.create_task(sidecar.routing.run_forever())]
        if sidecar.lookup.enabled:
            await asyncio.get_running_loop().run_in_executor(None, sidecar.lookup.try_reload)
            app[TASKS].append(asyncio.create_task(sidecar.every(config.batch.reload_s, sidecar.lookup.reload,
                                                                "loading the latest batch for the lookup")))

    async def stop(app: web.Application) -> None:
        for task in app.get(TASKS, []):
            task.cancel()
        await sidecar.shutdown()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app
