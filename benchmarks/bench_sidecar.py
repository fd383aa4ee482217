"""Open-loop load test of the monitoring sidecar: the same upstream called directly and through
the sidecar, at fixed request rates.

    make bench-sidecar            # or: .venv/bin/python benchmarks/bench_sidecar.py --rates 100 500 1000

The upstream is a stub (a raw asyncio HTTP server answering a fixed TF Serving-shaped predict
response in microseconds), so what is measured is the sidecar, not the model. The sidecar runs
as its real entry point (`python -m monitoring`) with prediction logging, schema checks and drift
on, against a real TFDV baseline, pinned to one core (CPU 0); the stub and the load generator share
the other core. Latency is measured from each request's *scheduled* send time (open loop, so a
stalled server is not hidden by coordinated omission). Results are noisy on a shared 2-core
machine: take the numbers as an order of magnitude and re-run on a quiet one.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = "taxi_tips"
ROW = {"trip_start_timestamp": 1767800000, "trip_miles": 2.5, "trip_seconds": 700, "fare": 9.1,
       "passenger_count": 1, "pickup_area": 8, "payment_type": "Cash", "company": "Company 3"}
BODY = json.dumps({"instances": [ROW]}).encode()
PATH = f"/v1/models/{MODEL}:predict"


# --- upstream stub ---------------------------------------------------------------------------
class StubServer(asyncio.Protocol):
    PREDICT = b'{"predictions": [0.4213]}'
    STATUS = json.dumps({"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                   "status": {"error_code": "OK", "error_message": ""}}]}).encode()

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            body = self.STATUS if head.startswith(b"GET") else self.PREDICT
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))


def run_stub(port: int) -> None:
    os.sched_setaffinity(0, {1 % os.cpu_count()})
    loop = asyncio.new_event_loop()
    loop.run_until_complete(loop.create_server(StubServer, "127.0.0.1", port))
    loop.run_forever()


# --- open-loop client ------------------------------------------------------------------------
class ClientConnection(asyncio.Protocol):
    def __init__(self, pool):
        self.pool, self.buffer, self.started, self.need = pool, b"", 0.0, None

    def connection_made(self, transport):
        self.transport = transport

    def send(self, scheduled: float, request: bytes):
        self.started, self.buffer, self.need = scheduled, b"", None
        self.transport.write(request)

    def data_received(self, data):
        self.buffer += data
        if self.need is None and b"\r\n\r\n" in self.buffer:
            head, _ = self.buffer.split(b"\r\n\r\n", 1)
            length = next((int(l[15:]) for l in head.split(b"\r\n") if l[:15].lower() == b"content-length:"), 0)
            self.status = int(head[9:12])
            self.need = len(head) + 4 + length
        if self.need is not None and len(self.buffer) >= self.need:
            self.pool.done(self, time.perf_counter() - self.started, self.status)

    def connection_lost(self, exc):
        self.pool.lost(self)


class OpenLoop:
    def __init__(self, port: int):
        self.port = port
        self.request = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (PATH.encode(), len(BODY), BODY))
        self.idle: list[ClientConnection] = []
        self.latencies: list[float] = []
        self.errors = 0

    def done(self, conn, latency, status):
        self.latencies.append(latency)
        self.errors += status != 200
        self.idle.append(conn)

    def lost(self, conn):
        if conn in self.idle:
            self.idle.remove(conn)

    async def _connection(self) -> ClientConnection:
        if self.idle:
            return self.idle.pop()
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: ClientConnection(self), "127.0.0.1", self.port)
        return conn

    async def run(self, rate: float, seconds: float) -> dict:
        self.latencies, self.errors = [], 0
        total = int(rate * seconds)
        start = time.perf_counter() + 0.05
        sent = 0
        while sent < total:
            now = time.perf_counter()
            due = min(total, int((now - start) * rate) + 1)
            while sent < due:
                scheduled = start + sent / rate
                conn = await self._connection()
                conn.send(scheduled, self.request)
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        deadline = time.perf_counter() + 5
        while len(self.latencies) < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        lat = np.array(self.latencies) * 1000
        return {"rate": rate, "sent": total, "completed": len(lat), "errors": self.errors,
                "achieved": len(lat) / (max(self.latencies or [0]) + seconds),
                "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan")}


def median_run(runs: list[dict]) -> dict:
    keys = ("p50_ms", "p95_ms", "p99_ms")
    merged = {k: float(np.median([r[k] for r in runs])) for k in keys}
    merged.update(completed=sum(r["completed"] for r in runs), errors=sum(r["errors"] for r in runs))
    return merged


# --- set-up ----------------------------------------------------------------------------------
def write_baseline(repository: Path) -> None:
    """A real TFDV baseline for the sidecar (generated data shaped like the default dataset's train split)."""
    import pandas as pd
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format

    from flywheel import names
    rng = np.random.default_rng(0)
    n = 5000
    frame = pd.DataFrame({
        "trip_start_timestamp": rng.integers(1_767_600_000, 1_768_200_000, n), "trip_miles": rng.gamma(2, 2, n),
        "trip_seconds": rng.integers(60, 3000, n), "fare": rng.gamma(3, 4, n), "passenger_count": rng.integers(1, 5, n),
        "pickup_area": rng.integers(1, 20, n), "payment_type": rng.choice(["Credit Card", "Cash", "Mobile"], n),
        "company": rng.choice([f"Company {i}" for i in range(10)], n), "big_tipper": rng.integers(0, 2, n)})
    stats = tfdv.generate_statistics_from_dataframe(frame)
    schema = tfdv.infer_schema(stats)
    schema.default_environment.extend([names.ENV_TRAINING, names.ENV_SERVING])
    tfdv.get_feature(schema, "big_tipper").not_in_environment.append(names.ENV_SERVING)
    extra = repository / MODEL / "1" / names.EXTRA_DIR
    extra.mkdir(parents=True)
    (extra / names.BASELINE_STATS).write_bytes(stats.SerializeToString())
    (extra / names.BASELINE_SCHEMA).write_text(text_format.MessageToString(schema))
    (extra / names.EVAL_PREDICTIONS).write_text(json.dumps({"values": rng.random(1000).tolist()}))
    (extra / names.MODEL_METADATA).write_text(json.dumps({"label": "big_tipper", "task": "binary", "features": {},
                                                          "data_version": "bench", "pushed_at": time.time()}))


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--max-rates", type=float, nargs="+", default=[2000, 3000, 4000, 5000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3, help="alternating direct/sidecar runs per rate (median)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    write_baseline(work / "repo")
    stub_port, sidecar_port = free_port(), free_port()
    import multiprocessing
    stub = multiprocessing.get_context("fork").Process(target=run_stub, args=(stub_port,), daemon=True)
    stub.start()
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "monitoring", "--port", str(sidecar_port), "--upstream", f"http://127.0.0.1:{stub_port}",
         "--model-repository", str(work / "repo"), "--model-name", MODEL, "--log-dir", str(work / "log")],
        cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, {0}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.sched_setaffinity(0, {1 % os.cpu_count()})
    try:
        for _ in range(100):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{sidecar_port}/healthz/ready", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("sidecar never became ready")

        async def bench():
            direct, proxied = OpenLoop(stub_port), OpenLoop(sidecar_port)
            await direct.run(200, 1), await proxied.run(200, 1)  # warm up connections and code paths
            print(f"{'rate/s':>7} {'path':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'done':>6} {'err':>4}"
                  f" {'sidecar CPU s per 1000 req':>28}")
            rows = []
            for rate in args.rates:
                # Direct and proxied runs alternate `repeats` times; each figure is the median over
                # the repeats, which damps other processes stealing the cores mid-run.
                ds, ps, cpus = [], [], []
                for _ in range(args.repeats):
                    ds.append(await direct.run(rate, args.seconds))
                    before = cpu_seconds(sidecar.pid)
                    ps.append(await proxied.run(rate, args.seconds))
                    cpus.append((cpu_seconds(sidecar.pid) - before) / max(ps[-1]["completed"], 1) * 1000)
                d, p, cpu = median_run(ds), median_run(ps), float(np.median(cpus))
                for name, r in (("direct", d), ("sidecar", p)):
                    print(f"{rate:7.0f} {name:>8} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f} {r['p99_ms']:8.3f}"
                          f" {r['completed']:6d} {r['errors']:4d} {'' if name == 'direct' else f'{cpu:28.3f}'}")
                rows.append((rate, d, p, cpu))
            print("\nadded latency by the sidecar (sidecar - direct):")
            for rate, d, p, cpu in rows:
                print(f"  {rate:6.0f}/s  p50 +{p['p50_ms'] - d['p50_ms']:.3f} ms  p95 +{p['p95_ms'] - d['p95_ms']:.3f} ms"
                      f"  p99 +{p['p99_ms'] - d['p99_ms']:.3f} ms  sidecar CPU {cpu * 1000:.0f} ms per 1000 requests"
                      f" (= {cpu:.2f} core at 1000 req/s)")
            held, capacity = 0.0, float("nan")
            for rate in args.max_rates:
                before, wall = cpu_seconds(sidecar.pid), time.perf_counter()
                r = await proxied.run(rate, args.seconds)
                busy = (cpu_seconds(sidecar.pid) - before) / (time.perf_counter() - wall)
                ok = r["completed"] >= 0.99 * r["sent"] and r["errors"] == 0 and r["p99_ms"] < 50
                print(f"  try {rate:6.0f}/s through sidecar: completed {r['completed']}/{r['sent']}, p99 "
                      f"{r['p99_ms']:.2f} ms, sidecar core busy {busy:.0%} -> {'held' if ok else 'NOT held'}")
                if not ok:
                    break
                held = rate
                if ok:
                    capacity = rate / busy if busy else float("nan")
            print(f"\nhighest rate held on one core (logging + drift + schema checks on): {held:.0f} req/s"
                  " (held = >=99% completed, no errors, p99 < 50 ms)")
            if held:
                print(f"sidecar CPU at {held:.0f} req/s: {1000 / capacity:.2f} core per 1000 req/s; the core would "
                      f"saturate near {capacity:.0f} req/s (the generator and stub share the other core and run "
                      "out first on a 2-core machine)")
        asyncio.run(bench())
    finally:
        sidecar.terminate()
        sidecar.wait(10)
        stub.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
