"""Servers for the serving and monitoring tests: the development model server as a subprocess,
the sidecar app on a thread, and a push of a trained version into a test's repository."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flywheel import loopback, names, serving_protocol
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = names.DEFAULT_MODEL_NAME


def predict(url: str, rows: list[dict], model: str = MODEL_NAME) -> None:
    """One REST predict call of `rows` to a sidecar or model server at `url`; it must answer 200."""
    import json
    request = urllib.request.Request(url + serving_protocol.predict_path(model), data=json.dumps({"instances": rows}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def predict_spread(sidecars: list, rows: list[dict], batch: int = 20, seed: int = 3) -> None:
    """`rows` in requests of `batch` rows, each to a sidecar chosen at random (as a Service spreads
    them over replicas); returns when every sidecar has processed what it received."""
    import random
    rng = random.Random(seed)
    for start in range(0, len(rows), batch):
        predict(rng.choice(sidecars).url, rows[start:start + batch])
    for sidecar in sidecars:
        sidecar.drain()


def push_version(exported: dict[int, Path], repository: Path, version: int) -> Path:
    """Copy a version in the way the push step does: stage under a dot-name, then one rename."""
    model_dir = repository / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f"{names.STAGING_PREFIX}{version}"
    shutil.copytree(exported[version], staging)
    final = model_dir / str(version)
    os.rename(staging, final)
    return final


def wait_http(url: str, timeout_s: float = 60.0, expect: int = 200, gone=lambda: False) -> None:
    """Wait until `url` answers `expect`; TimeoutError when it does not in time, or as soon as
    `gone()` says the server has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not gone():
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == expect:
                    return
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout_s}s")


class ServerProcess:
    """A subprocess started with the repo's Python; stopped (and reaped) by the fixture."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log.open("wb"),
                                     stderr=subprocess.STDOUT)

    def stop(self) -> None:
        loopback.stop(self.proc)


def start_dev_server(repository: Path, log_dir: Path, poll_seconds: float = 0.5,
                     model_name: str = MODEL_NAME) -> ServerProcess:
    """The development model server on free loopback ports, serving `repository`."""
    rest, grpc_port = free_port(), free_port()
    server = ServerProcess(["-m", "devserver", "--host", "127.0.0.1", "--rest-port", str(rest),
                            "--grpc-port", str(grpc_port), "--model-repository", str(repository),
                            "--model-name", model_name, "--poll-seconds", str(poll_seconds)],
                           log_dir / f"model_server_{rest}.log")
    try:
        wait_http(serving_protocol.local_url(rest, serving_protocol.model_path(model_name)), timeout_s=120)
    except TimeoutError:
        server.stop()
        raise AssertionError("model server did not start:\n" + server.log.read_text()[-3000:])
    server.rest_url = f"http://127.0.0.1:{rest}"
    server.grpc_target = f"127.0.0.1:{grpc_port}"
    server.repository = repository
    return server


class SidecarThread:
    """The sidecar (monitoring.app.make_app served by monitoring.server.start, as `python -m
    monitoring` serves it) on its own event loop in a thread, on free ports."""

    def __init__(self, config, **make_app_kwargs):
        import asyncio
        import threading

        from prometheus_client import CollectorRegistry

        from monitoring import server
        from monitoring.app import SIDECAR, make_app
        self.registry = make_app_kwargs.pop("registry", None) or CollectorRegistry()
        self.config = config
        self.app = make_app(config, registry=self.registry, **make_app_kwargs)
        self.state = self.app[SIDECAR]
        self.url = f"http://127.0.0.1:{config.port}"
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        failed: list[BaseException] = []

        def serve():
            asyncio.set_event_loop(self.loop)
            try:
                self.runner = self.loop.run_until_complete(server.start(self.app, config))
            except BaseException as error:  # reported to the test below
                failed.append(error)
                return
            finally:
                started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        if not started.wait(30) or failed:
            raise RuntimeError(f"sidecar did not start on port {config.port}: {failed}")

    def metric(self, name: str, labels: dict | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def drain(self) -> None:
        assert self.state.observer.drain(20), "observer did not drain"

    def stop(self) -> None:
        import asyncio
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
