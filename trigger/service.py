"""The trigger's HTTP service (aiohttp).

    POST /api/v1/alerts   Alertmanager webhook (webhook_config, payload version 4): 200 with the
                          decision {"action": started|duplicate|busy|cooldown|waiting|ignored, ...};
                          400 for a body that is not a notification, 413 beyond trigger.max_body_bytes
    GET  /status          the decider's state and the last events
    GET  /healthz         200 while serving
    GET  /metrics         Prometheus: notifications by decision, runs by outcome, run in flight

Every decision and run event is appended to an event file (JSON lines): the record of which
alert caused which run, read back at start so a restarted service keeps its episodes and cooldown.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from flywheel import params as params_module
from flywheel import serving_protocol
from flywheel.errors import DataError
from trigger import decide, runs

log = logging.getLogger(__name__)
WEBHOOK, STATUS, HEALTH, METRICS = "/api/v1/alerts", "/status", "/healthz", "/metrics"
KEEP_EVENTS = 50


class Trigger:
    def __init__(self, target: runs.Target, params: params_module.Params, events_file: str,
                 registry: CollectorRegistry | None = None):
        self.target, self.params, self.events_file = target, params, events_file
        self.decider = decide.Decider(params.trigger)
        self.events: list[dict] = []
        self.tasks: set[asyncio.Task] = set()
        self.current = None
        registry = registry or CollectorRegistry()
        self.notifications = Counter("flywheel_trigger_notifications", "Alertmanager notifications by decision",
                                     ["decision"], registry=registry)
        self.runs = Counter("flywheel_trigger_runs", "Training runs the trigger started, by outcome",
                            ["outcome"], registry=registry)
        self.in_flight = Gauge("flywheel_trigger_run_in_flight", "1 while a run the trigger started is running",
                               registry=registry)
        self.registry = registry
        self._restore()

    def _restore(self) -> None:
        if not os.path.exists(self.events_file):
            return
        with open(self.events_file, "rb") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue   # a torn last line
                if event.get("event") == "run_started":
                    self.decider.restore(event["key"], event["time"])
                self.events = (self.events + [event])[-KEEP_EVENTS:]

    def record(self, event: str, **fields) -> dict:
        entry = {"time": time.time(), "event": event, **fields}
        os.makedirs(os.path.dirname(os.path.abspath(self.events_file)), exist_ok=True)
        with open(self.events_file, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
        self.events = (self.events + [entry])[-KEEP_EVENTS:]
        log.info("%s %s", event, json.dumps(fields, default=str)[:500])
        return entry

    async def notify(self, notification: decide.Notification) -> dict:
        received = time.time()
        decision = self.decider.begin(notification)
        if decision.action == decide.STARTED:
            decision = await self._start(decision)
        self.notifications.labels(decision.action).inc()
        self.record("notification", received=received, group=notification.group_key, status=notification.status,
                    alerts=[a.name for a in notification.alerts], **decision.as_dict())
        return decision.as_dict()

    async def _start(self, decision: decide.Decision) -> decide.Decision:
        loop = asyncio.get_running_loop()
        trigger = runs.trigger_record(decision.alert, decision.key)
        try:
            span = await loop.run_in_executor(None, runs.build_span, self.target, self.params)
        except DataError as error:
            self.decider.waiting(decision.key)
            return decide.Decision(decide.WAITING, str(error), decision.key, decision.alert)
        except Exception as error:   # the span could not be written (storage, dvc): no run, say why
            self.decider.waiting(decision.key)
            log.exception("building the span failed")
            return decide.Decision(decide.WAITING, f"span not built: {error}", decision.key, decision.alert)
        self.record("span_built", key=decision.key, path=span.path, labeled_rows=span.labeled_rows,
                    unlabeled_rows=span.unlabeled_rows, report=span.lines())
        try:
            run = await loop.run_in_executor(None, runs.start, self.target, self.params, span, trigger)
        except Exception as error:
            self.decider.waiting(decision.key)
            log.exception("starting the run failed")
            return decide.Decision(decide.WAITING, f"run not started: {error}", decision.key, decision.alert)
        self.decider.started(decision.key)
        self.current = run
        self.in_flight.set(1)
        self.record("run_started", key=decision.key, run_id=run.run_id, span=span.path, trigger=trigger)
        task = asyncio.create_task(self._follow(decision.key, run))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return decide.Decision(decide.STARTED, f"{decision.reason}; run {run.run_id} on {span.path} "
                               f"({span.labeled_rows} labeled rows)", decision.key, decision.alert)

    async def _follow(self, key: str, run) -> None:
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(None, run.wait)
        except Exception as error:
            outcome = {"succeeded": False, "error": str(error)}
        self.decider.finished(key)
        self.current = None
        self.in_flight.set(0)
        self.runs.labels("succeeded" if outcome.get("succeeded") else "failed").inc()
        self.record("run_finished", key=key, run_id=run.run_id, **outcome)

    # --- HTTP ------------------------------------------------------------------------------------
    async def webhook(self, request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.read())
            notification = decide.parse(payload)
        except (ValueError, UnicodeDecodeError, decide.NotificationError) as error:
            return web.json_response(serving_protocol.error_body(str(error)[:500]), status=400)
        return web.json_response(await self.notify(notification))

    async def status(self, request: web.Request) -> web.Response:
        d = self.decider
        return web.json_response({"in_flight": d.in_flight, "last_start": d.last_start if d.handled else None,
                                  "episodes": sorted(d.handled), "events": self.events}, dumps=_dumps)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def shutdown(self, app: web.Application) -> None:
        if self.current is not None:
            self.current.stop()
        for task in list(self.tasks):
            task.cancel()


def _dumps(value) -> str:
    return json.dumps(value, default=str)


def make_app(trigger: Trigger) -> web.Application:
    app = web.Application(client_max_size=trigger.params.trigger.max_body_bytes)
    app.router.add_post(WEBHOOK, trigger.webhook)
    app.router.add_get(STATUS, trigger.status)
    app.router.add_get(HEALTH, trigger.health)
    app.router.add_get(METRICS, trigger.metrics)
    app.on_shutdown.append(trigger.shutdown)
    return app
