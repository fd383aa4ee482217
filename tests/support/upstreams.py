"""TF Serving-shaped upstreams for the sidecar tests.

`Upstream` is a raw socket server for tests that need one behaving in a particular way: it
answers the model-status call (version 1 AVAILABLE) and handles a request's body with a function
of the test's (`answer(body) -> reply bytes`, or None to never answer). `SmallUpstream` is a few
lines of aiohttp answering TF Serving's model-status and :predict REST calls with a fixed logistic
function: for tests where a real SavedModel would only add a TensorFlow import and change nothing
the test reads."""
from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Callable

from flywheel import names, serving_protocol
from tests.support.app_thread import AppThread
from tests.support.net import free_port

MODEL = names.DEFAULT_MODEL_NAME

STATUS = json.dumps({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}).encode()


def ok(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


def never(body: bytes) -> None:
    return None


def one_score_per_row(body: bytes) -> bytes:
    """A model that accepts any rows: 0.5 for each."""
    return ok(json.dumps({"predictions": [0.5] * len(json.loads(body)["instances"])}).encode())


class LoopbackServer:
    """An asyncio protocol served on a free loopback port from its own thread."""

    def __init__(self, protocol: Callable[[], asyncio.Protocol]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.loop.create_server(protocol, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Upstream(LoopbackServer):
    def __init__(self, answer: Callable[[bytes], bytes | None]):
        class Protocol(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport, self.buffer = transport, b""

            def data_received(self, data):
                self.buffer += data
                head, sep, body = self.buffer.partition(b"\r\n\r\n")
                if not sep:
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if len(body) < length:
                    return
                self.buffer = body[length:]
                reply = ok(STATUS) if head.startswith(b"GET") else answer(body[:length])
                if reply is not None:
                    self.transport.write(reply)

        super().__init__(Protocol)


def score(row: dict) -> float:
    """SmallUpstream's model: a fixed logistic function of two features."""
    z = 1.2 * (row.get("payment_type") == "Credit Card") - 0.8 + 0.02 * float(row.get("fare") or 0.0)
    return 1.0 / (1.0 + math.exp(-z))


class SmallUpstream:
    """TF Serving's REST model-status and :predict calls for one model, version 1, on loopback."""

    def __init__(self):
        from aiohttp import web

        async def status(request):
            return web.json_response({"model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})

        async def predict(request):
            try:
                body = json.loads(await request.read())
            except ValueError as err:  # as TF Serving answers a body that is not JSON
                return web.json_response(serving_protocol.error_body(f"JSON Parse error: {err}"), status=400)
            return web.json_response({"predictions": [score(r) for r in body["instances"]]})

        async def metrics(request):  # TF Serving's own Prometheus endpoint, minimal
            return web.Response(text=":tensorflow:serving:request_count{model_name=\"%s\"} 1\n" % MODEL)

        self.port = free_port()
        app = web.Application()
        app.router.add_get(serving_protocol.model_path(MODEL), status)
        app.router.add_post(serving_protocol.predict_path(MODEL), predict)
        app.router.add_post(serving_protocol.predict_path(MODEL, 1), predict)   # the sidecar names the version
        app.router.add_get("/monitoring/prometheus/metrics", metrics)
        self.server = AppThread(app, self.port, timeout=20, what="small upstream")

    def stop(self):
        self.server.stop(20)
