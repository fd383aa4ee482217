"""The data path of the serving pods, for the HPA test: a real sidecar process per kwok pod.

kwok runs no containers, so this stands in for the kubelet on one point: for every Running pod
of the Deployment it starts the pod's sidecar container as a process (`python -m monitoring`,
in front of one small TF Serving-compatible upstream) and stops it when the pod goes away. Each
sidecar is published to Prometheus with the labels kube-prometheus-stack's ServiceMonitor
scraping gives a pod's endpoint (namespace, pod, container, service, endpoint, job), through a
file_sd target file Prometheus watches. A load generator spreads a fixed request rate over the
ready sidecars round-robin, as the Service would.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.cluster import ControlPlane, wait_until
from flywheel import loopback, names, serving_protocol
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL = names.DEFAULT_MODEL_NAME
SELECTOR = "app.kubernetes.io/name=flywheel-serving"
METRICS_SERVICE = "flywheel-serving-metrics"


@dataclass
class Sidecar:
    pod: str
    node: str
    port: int
    proc: subprocess.Popen
    ready: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class PodSidecars:
    plane: ControlPlane
    namespace: str
    upstream_url: str
    model_repository: Path
    work_dir: Path
    targets_file: Path
    sidecars: dict[str, Sidecar] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.targets_file.write_text("[]")
        self._thread = threading.Thread(target=self._run, daemon=True, name="pod-sidecars")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sidecar in list(self.sidecars.values()):
            self._end(sidecar)
        self.sidecars.clear()

    def ready_urls(self) -> list[str]:
        return [s.url for s in list(self.sidecars.values()) if s.ready]

    # --- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as err:  # keep going: a failed poll is retried; reported at the end
                self.errors.append(repr(err))
            self._stop.wait(1.0)

    def _running_pods(self) -> dict[str, str]:
        pods = json.loads(self.plane.kubectl("get", "pods", "-n", self.namespace, "-l", SELECTOR, "-o", "json").stdout)
        return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods["items"]
                if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}

    def _sync(self) -> None:
        pods = self._running_pods()
        changed = False
        for name in set(self.sidecars) - set(pods):
            self._end(self.sidecars.pop(name))
            changed = True
        for name in set(pods) - set(self.sidecars):
            self.sidecars[name] = self._begin(name, pods[name])
        for sidecar in self.sidecars.values():
            if not sidecar.ready and _ready(sidecar.url):
                sidecar.ready = changed = True
        if changed:
            self._write_targets()

    def _begin(self, pod: str, node: str) -> Sidecar:
        port = free_port()
        log_dir = self.work_dir / pod
        log_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitoring", "--host", "127.0.0.1", "--port", str(port),
             "--upstream", self.upstream_url, "--model-repository", str(self.model_repository),
             "--model-name", MODEL, "--log-dir", str(log_dir / "prediction_log"), "--version-poll-s", "0.5"],
            cwd=ROOT, stdout=(log_dir / "sidecar.log").open("wb"), stderr=subprocess.STDOUT)
        return Sidecar(pod, node, port, proc)

    def _end(self, sidecar: Sidecar) -> None:
        loopback.stop(sidecar.proc)

    def _write_targets(self) -> None:
        """Atomically, as Prometheus reads the file whenever it changes."""
        groups = [{"targets": [f"127.0.0.1:{s.port}"],
                   "labels": {"namespace": self.namespace, "pod": s.pod, "container": "sidecar", "node": s.node,
                              "service": METRICS_SERVICE, "endpoint": "metrics", "job": METRICS_SERVICE}}
                  for s in self.sidecars.values() if s.ready]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz/ready", timeout=2) as resp:
            return resp.status == 200
    except Exception:  # not up yet
        return False


class Load:
    """`rate` predict requests per second, open loop, round-robin over `urls()` (re-read each tick),
    sent by `clients` clients in turn, each keeping its own connections (as the many clients of a
    Service do)."""

    def __init__(self, urls, rate: float, body: bytes, max_in_flight: int = 64, clients: int = 1):
        self.urls, self.rate, self.body, self.max_in_flight = urls, rate, body, max_in_flight
        self.clients = clients
        self.sent = self.ok = self.failed = 0
        self.errors: Counter[str] = Counter()   # what failed, by exception or status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True, name="load")

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> float:
        """Stop; return the rate achieved (successful requests per second)."""
        self._stop.set()
        self._thread.join(30)
        return self.ok / max(time.monotonic() - self.started, 1e-9)

    async def _main(self) -> None:
        import aiohttp

        tick = 0.05
        in_flight = asyncio.Semaphore(self.max_in_flight)
        async with contextlib.AsyncExitStack() as stack:
            sessions = itertools.cycle([await stack.enter_async_context(aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10))) for _ in range(self.clients)])
            pending: set[asyncio.Task] = set()
            cycle, known = iter(()), []
            next_tick = time.monotonic()
            owed = 0.0
            while not self._stop.is_set():
                urls = self.urls()
                if urls != known:
                    known, cycle = urls, itertools.cycle(urls)
                owed += self.rate * tick
                while owed >= 1 and known:
                    owed -= 1
                    task = asyncio.create_task(self._one(next(sessions), next(cycle), in_flight))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                next_tick += tick
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            if pending:
                await asyncio.wait(pending, timeout=15)

    async def _one(self, session, url: str, in_flight: asyncio.Semaphore) -> None:
        import aiohttp

        if in_flight.locked():  # the sidecars are behind: drop, as a client with a deadline would
            self.failed += 1
            self.errors["not sent: too many in flight"] += 1
            return
        async with in_flight:
            self.sent += 1
            try:
                async with session.post(url + serving_protocol.predict_path(MODEL), data=self.body,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        self.ok += 1
                    else:
                        self.failed += 1
                        self.errors[f"HTTP {resp.status}"] += 1
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as err:
                self.failed += 1
                self.errors[type(err).__name__] += 1


def wait_ready(url: str, timeout_s: float = 60) -> None:
    wait_until(lambda: _ready(url), timeout_s, f"{url} ready")
