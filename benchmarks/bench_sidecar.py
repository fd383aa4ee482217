"""The monitoring sidecar's cost: the same upstream called directly and through the sidecar.

    make bench-sidecar            # or: .venv/bin/python benchmarks/bench_sidecar.py [--rates 100 500 1000]

Set-up: a model version made by the pipeline's own steps (pipelines/chain.py: ingest, statistics,
schema, validate, train, evaluate, push) on a span of the default dataset, so the sidecar loads
the bundle the push step writes. The upstream is a stub (raw asyncio, a fixed TF Serving-shaped
answer in microseconds), so what is measured is the sidecar, not the model. The sidecar runs as
its real entry point (`python -m monitoring`, default params: logging to segments, schema checks,
drift on every row, feedback kept) pinned to CPU 0; the stub and the load generators share CPU 1.

1. Latency: open loop, Poisson arrivals at each rate over a pool of 16 keep-alive connections (an
   arrival that finds every connection busy waits for one, and its latency counts from its
   scheduled time: no coordinated omission). Direct, floor and through-sidecar runs alternate,
   each figure is the median over the repeats; added = sidecar - direct, measured in the same
   run. The floor is the least any proxy in Python adds on this machine: a few lines of raw
   asyncio on uvloop that forward each request with the sidecar's upstream client and do
   nothing else, pinned to the sidecar's core (a third process hop and its wake-ups cost the
   same whatever the proxy does).
2. CPU per request: the sidecar's user+system CPU (from /proc) over the requests it answered,
   at each rate and saturated (wrk, Debian's package, 16 connections, when it is installed; else
   this script's closed loop); capacity per core = 1 / (CPU per request at saturation). The
   floor proxy's, the same way.
3. Records written and dropped by the prediction log over the run (the log keeps up, or says so).

The figures are noisy on a shared 2-core machine; the machine's load average is printed with them.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flywheel import names, params, serving_protocol  # noqa: E402
from flywheel.loopback import free_port  # noqa: E402
from tools import datagen  # noqa: E402

CONNECTIONS = 16
TARGET_CAPACITY = 8000        # requests/s per core, logging and drift on
TARGET_ADDED_P99_MS = 1.0     # at 500 requests/s


# --- the model version, made by the pipeline's steps ----------------------------------------
def train_version(work: Path) -> tuple[Path, dict]:
    """A span of the default dataset through pipelines.chain; returns (repository, one served row)."""
    from pipelines import chain
    span = datagen.generate_span(params.DataParams(rows_per_span=3000), 1)
    data = work / "span-001.csv"
    span.to_csv(data, index=False)
    repository = work / "repository"
    settings = params.override(params.load(), {"push.model_repository": str(repository), "train.epochs": 2, "train.min_steps": 0})
    result = chain.run(str(data), work / "run", settings, force=True, run_id="bench-sidecar").results["push"]
    if not result.pushed:
        raise SystemExit(f"the benchmark's version was not pushed: {result.reason}")
    row = json.loads(span.drop(columns=[datagen.LABEL, datagen.PII_COLUMN]).head(1).to_json(orient="records"))[0]
    return repository, row


# --- HTTP/1.1 framing by Content-Length, all the stub, the floor and the client need ------------
def content_length(head: list[bytes]) -> int:
    return next((int(line[15:]) for line in head[1:] if line[:15].lower() == b"content-length:"), 0)


def next_request(buffer: bytes) -> tuple[list[bytes], bytes, bytes] | None:
    """(head lines, body, the bytes after it) of the request at the start of buffer, once all there."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].split(b"\r\n")
    stop = end + 4 + content_length(head)
    return (head, buffer[end + 4:stop], buffer[stop:]) if len(buffer) >= stop else None


# --- upstream stub -------------------------------------------------------------------------
class StubServer(asyncio.Protocol):
    PREDICT = b'{"predictions": [0.4213]}'
    STATUS = json.dumps({"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                   "status": {"error_code": "OK", "error_message": ""}}]}).encode()

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while (found := next_request(self.buffer)) is not None:
            head, _, self.buffer = found
            body = self.STATUS if head[0].startswith(b"GET") else self.PREDICT
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))


def run_stub(port: int) -> None:
    os.sched_setaffinity(0, {1 % os.cpu_count()})
    loop = asyncio.new_event_loop()
    loop.run_until_complete(loop.create_server(StubServer, "127.0.0.1", port))
    loop.run_forever()


# --- the floor: a proxy that does nothing but forward -----------------------------------------
class FloorProxy(asyncio.Protocol):
    def __init__(self, pool):
        self.pool, self.buffer = pool, b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        found = next_request(self.buffer)
        if found is None:
            return
        head, body, self.buffer = found
        method, path = head[0].split(b" ")[:2]
        asyncio.get_running_loop().create_task(self.forward(method.decode(), path.decode(), body))

    async def forward(self, method: str, path: str, body: bytes):
        status, content_type, payload = await self.pool.request(method, path, body, [])
        if self.transport.is_closing():   # wrk closes its connections at the end with requests in flight
            return
        self.transport.write(b"HTTP/1.1 %d OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                             % (status, content_type.encode(), len(payload), payload))


def run_floor(port: int, upstream_port: int) -> None:
    from monitoring.upstream import UpstreamPool
    os.sched_setaffinity(0, {0})
    pool = UpstreamPool(f"http://127.0.0.1:{upstream_port}", 10.0)
    loop = uvloop.new_event_loop()
    loop.run_until_complete(loop.create_server(lambda: FloorProxy(pool), "127.0.0.1", port, backlog=1024))
    loop.run_forever()


# --- open-loop Poisson client over a fixed pool of connections --------------------------------
class Connection(asyncio.Protocol):
    def __init__(self, client):
        self.client, self.buffer, self.scheduled, self.need = client, b"", 0.0, None
        self.last = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        # The server closed it: one left idle longer than the sidecar's idle_timeout_s, as any
        # server may. A client opens another, as HTTP clients' pools do.
        self.client.lost(self)

    def send(self, scheduled: float):
        self.scheduled, self.buffer, self.need = scheduled, b"", None
        self.transport.write(self.client.request)

    def data_received(self, data):
        self.buffer += data
        if self.need is None and b"\r\n\r\n" in self.buffer:
            head, _ = self.buffer.split(b"\r\n\r\n", 1)
            self.status = int(head[9:12])
            self.need = len(head) + 4 + content_length(head.split(b"\r\n"))
            # The server's last answer on this connection (e.g. the sidecar's connection_max_age_s):
            # an HTTP client does not send on it again.
            self.last = b"\r\nconnection: close" in head.lower()
        if self.need is not None and len(self.buffer) >= self.need:
            self.client.done(self, time.perf_counter() - self.scheduled, self.status)


class PoissonClient:
    def __init__(self, port: int, path: str, body: bytes):
        self.port = port
        self.request = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        self.idle: list[Connection] = []
        self.waiting: list[float] = []

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(CONNECTIONS):
            _, conn = await loop.create_connection(lambda: Connection(self), "127.0.0.1", self.port)
            self.idle.append(conn)

    def lost(self, conn: Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        _, conn = await asyncio.get_running_loop().create_connection(lambda: Connection(self), "127.0.0.1", self.port)
        self._free(conn)

    def _free(self, conn: Connection) -> None:
        if self.waiting:
            conn.send(self.waiting.pop(0))
        else:
            self.idle.append(conn)

    def done(self, conn: Connection, latency: float, status: int) -> None:
        self.latencies.append(latency)
        self.errors += status != 200
        if conn.last:
            conn.transport.close()
            asyncio.get_running_loop().create_task(self._reconnect())
        else:
            self._free(conn)

    def _arrive(self, scheduled: float) -> None:
        if self.idle:
            self.idle.pop().send(scheduled)
        else:
            self.waiting.append(scheduled)

    async def run(self, rate: float, seconds: float, seed: int) -> dict:
        self.latencies, self.errors = [], 0
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, int(rate * seconds))
        start = time.perf_counter() + 0.02
        schedule = start + np.cumsum(gaps)
        sent = 0
        while sent < len(schedule):
            now = time.perf_counter()
            while sent < len(schedule) and schedule[sent] <= now:
                self._arrive(float(schedule[sent]))
                sent += 1
            if sent < len(schedule):
                await asyncio.sleep(max(0.0, float(schedule[sent]) - time.perf_counter()))
        deadline = time.perf_counter() + 10
        while len(self.latencies) < len(schedule) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        lat = np.array(self.latencies) * 1000
        return {"sent": len(schedule), "completed": len(lat), "errors": self.errors,
                "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}

    async def closed_loop(self, seconds: float) -> int:
        """Every connection sends its next request as soon as it has its answer: the rate this
        client can drive (used when wrk is not installed)."""
        self.latencies, self.errors = [], 0
        end = time.perf_counter() + seconds
        for conn in list(self.idle):
            self.idle.remove(conn)
            conn.send(time.perf_counter())
        while time.perf_counter() < end:
            await asyncio.sleep(0.05)
            while self.idle:
                self.idle.pop().send(time.perf_counter())
        count = len(self.latencies)
        await asyncio.sleep(0.5)
        return count


# --- measurements --------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port: int, sample: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wrk(port: int, path: str, body: bytes, seconds: float, work: Path) -> int | None:
    """Requests completed by wrk (closed loop, CONNECTIONS connections, pinned to CPU 1); None without wrk."""
    if shutil.which("wrk") is None:
        return None
    script = work / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    result = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(script),
                             f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {1 % os.cpu_count()}))
    for line in result.stdout.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    raise SystemExit(f"wrk failed: {result.stdout}{result.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="alternating direct/sidecar runs per rate (median)")
    parser.add_argument("--saturate-seconds", type=float, default=10.0)
    parser.add_argument("--without-joint", action="store_true",
                        help="serve the version without its joint drift reference (the sidecar skips the joint "
                             "check): run with and without to measure what the check costs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    print(f"training a version with the pipeline's steps (logs in {work}) ...", flush=True)
    started = time.time()
    with open(work / "train.log", "w") as log:   # TensorFlow writes to the file descriptors themselves
        sys.stdout.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            repository, row = train_version(work)
        finally:
            sys.stdout.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
    print(f"version pushed in {time.time() - started:.0f} s")
    if args.without_joint:
        removed = 0
        for profiles_file in repository.glob(f"*/*/assets.extra/{names.BASELINE_PROFILES}"):
            document = json.loads(profiles_file.read_text())
            removed += document.pop("joint", None) is not None
            profiles_file.write_text(json.dumps(document))
        print(f"joint drift check off: the joint reference removed from {removed} version(s)")
    model = params.load().push.model_name
    path = serving_protocol.predict_path(model)
    body = json.dumps({"instances": [row]}).encode()
    stub_port, sidecar_port = free_port(), free_port()
    stub = multiprocessing.get_context("fork").Process(target=run_stub, args=(stub_port,), daemon=True)
    stub.start()
    floor_port = free_port()
    floor = multiprocessing.get_context("fork").Process(target=run_floor, args=(floor_port, stub_port), daemon=True)
    floor.start()
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "monitoring", "--port", str(sidecar_port), "--upstream", f"http://127.0.0.1:{stub_port}",
         "--model-repository", str(repository), "--model-name", model, "--log-dir", str(work / "log"),
         "--log-destination", str(work / "logs")],
        cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, {0}), stdout=(work / "sidecar.log").open("wb"),
        stderr=subprocess.STDOUT)
    os.sched_setaffinity(0, {1 % os.cpu_count()})
    try:
        for _ in range(150):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{sidecar_port}/healthz/ready", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("sidecar never became ready: " + (work / "sidecar.log").read_text()[-2000:])
        # uvloop: the client's own overhead lands in every latency it measures, keep it small
        uvloop.run(bench(args, stub_port, sidecar_port, sidecar.pid, floor_port, floor.pid, path, body, work))
    finally:
        sidecar.terminate()
        sidecar.wait(30)
        floor.terminate()
        stub.terminate()
    return 0


async def bench(args, stub_port: int, sidecar_port: int, pid: int, floor_port: int, floor_pid: int, path: str,
                body: bytes, work: Path) -> None:
    direct = PoissonClient(stub_port, path, body)
    floor = PoissonClient(floor_port, path, body)
    proxied = PoissonClient(sidecar_port, path, body)
    for client in (direct, floor, proxied):   # connect, and warm up connections and code paths
        await client.connect()
        await client.run(300, 1, 0)
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; Poisson arrivals over {CONNECTIONS} "
          f"connections, {args.seconds:g} s per run, median of {args.repeats}; added = through it - direct")
    print(f"{'rate/s':>7} | {'direct p50':>10} {'p99':>7} | {'floor added p50':>15} {'p99':>7} | "
          f"{'sidecar added p50':>17} {'p99':>7} | CPU per request: sidecar (floor)")
    rows = []
    for rate in args.rates:
        runs: dict[str, list] = {"direct": [], "floor": [], "sidecar": []}
        cpus: dict[str, list] = {"floor": [], "sidecar": []}
        for repeat in range(args.repeats):
            runs["direct"].append(await direct.run(rate, args.seconds, seed=repeat))
            for name, client, process in (("floor", floor, floor_pid), ("sidecar", proxied, pid)):
                before = cpu_seconds(process)
                runs[name].append(await client.run(rate, args.seconds, seed=repeat))
                cpus[name].append((cpu_seconds(process) - before) / max(runs[name][-1]["completed"], 1) * 1000)
        med = {name: {k: float(np.median([r[k] for r in found])) for k in ("p50", "p99")} for name, found in runs.items()}
        cpu = {name: float(np.median(found)) for name, found in cpus.items()}
        errors = sum(r["errors"] + r["sent"] - r["completed"] for found in runs.values() for r in found)
        d, f, p = med["direct"], med["floor"], med["sidecar"]
        rows.append((rate, d, f, p, cpu))
        print(f"{rate:7.0f} | {d['p50']:8.3f}ms {d['p99']:5.2f}ms | {f['p50'] - d['p50']:+13.3f}ms {f['p99'] - d['p99']:+5.2f}ms"
              f" | {p['p50'] - d['p50']:+15.3f}ms {p['p99'] - d['p99']:+5.2f}ms | {cpu['sidecar']:.3f} ms ({cpu['floor']:.3f} ms)"
              + (f"   ({errors} errors)" if errors else ""))

    print(f"\nsaturated ({args.saturate_seconds:g} s closed loop, {CONNECTIONS} connections):")
    tool = "wrk" if shutil.which("wrk") else "this script's closed loop (install Debian's wrk for a faster client)"
    saturated = {}
    for name, port, process, client in (("floor", floor_port, floor_pid, floor), ("sidecar", sidecar_port, pid, proxied)):
        before_cpu, before_wall = cpu_seconds(process), time.perf_counter()
        completed = wrk(port, path, body, args.saturate_seconds, work)
        if completed is None:
            completed = await client.closed_loop(args.saturate_seconds)
        wall = time.perf_counter() - before_wall
        used = cpu_seconds(process) - before_cpu
        saturated[name] = used / completed * 1000
        print(f"  {tool}: {completed / wall:,.0f} req/s through the {name}, whose core was {used / wall:.0%} busy: "
              f"{saturated[name]:.3f} ms CPU per request -> capacity {1000 / saturated[name]:,.0f} req/s per core"
              + (f" (target >= {TARGET_CAPACITY:,})" if name == "sidecar" else ""))
    written = metric(sidecar_port, 'flywheel_prediction_log_records_total{outcome="written"}')
    dropped = metric(sidecar_port, 'flywheel_prediction_log_records_total{outcome="dropped"}')
    print(f"  prediction log over the whole run: {written:,.0f} records written, {dropped:,.0f} dropped")
    at_500 = next((row for row in rows if row[0] == 500), None)
    if at_500 is not None:
        _, d, f, p, cpu = at_500
        print(f"\nat 500 req/s: added p99 {p['p99'] - d['p99']:+.3f} ms (target <= {TARGET_ADDED_P99_MS} ms; the floor "
              f"adds {f['p99'] - d['p99']:+.3f} ms); CPU per request {cpu['sidecar']:.3f} ms = "
              f"{cpu['sidecar'] / saturated['sidecar']:.1f}x the saturated {saturated['sidecar']:.3f} ms (the floor: "
              f"{cpu['floor'] / saturated['floor']:.1f}x)")


if __name__ == "__main__":
    sys.exit(main())
