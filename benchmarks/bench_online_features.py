"""What serving by entity key adds: the same predict requests through two sidecars, one that gets
the area features from Feast's feature server by `pickup_area` (monitoring/online_features.py),
one that is sent rows already carrying them.

    make bench-online-features     # or: .venv/bin/python benchmarks/bench_online_features.py [--requests 1000]

Set-up, all on loopback: a feature store of its own (the spans of the default generator, the
repository `feast apply`ed and materialised to SQLite, `feast serve` with one worker: the
feature store's environment, `make feast`), a stub TF Serving (a fixed answer in microseconds, so
the model costs nothing), and two sidecars (`python -m monitoring`, default params: logging,
schema checks). Requests go one at a time over a keep-alive connection per sidecar, alternating
between the two (the same rows, one with the features filled in by the client), so both see the
same machine. Added = keyed - complete, p50 and p99, measured in the same run; the feature
server's own answer time (direct, the same connection reuse) is printed beside it.
The figures are noisy on a shared 2-core machine; the load average is printed with them.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flywheel import names, serving_protocol  # noqa: E402
from flywheel.loopback import free_port  # noqa: E402
from tests.support.featurestore import FeatureServer, make_store  # noqa: E402
from tests.support.servers import wait_http  # noqa: E402
from tests.support.upstreams import Upstream, ok  # noqa: E402

MODEL = names.DEFAULT_MODEL_NAME
FEATURES = ("area_trips_1d", "area_tip_rate_1d", "area_avg_fare_1d")


def sidecar(work: Path, upstream: str, feature_server: str, tag: str) -> subprocess.Popen:
    port = free_port()
    flags = ["--feature-server", feature_server] if feature_server else []
    process = subprocess.Popen(
        [sys.executable, "-m", "monitoring", "--port", str(port), "--upstream", upstream, "--model-repository",
         str(work / "repository"), "--model-name", MODEL, "--log-dir", str(work / f"log-{tag}"),
         "--log-destination", str(work / f"logs-{tag}"), *flags],
        cwd=ROOT, stdout=(work / f"sidecar-{tag}.log").open("wb"), stderr=subprocess.STDOUT)
    process.port = port
    wait_http(f"http://127.0.0.1:{port}/healthz/live", timeout_s=120, gone=lambda: process.poll() is not None)
    return process


def timed_post(connection: http.client.HTTPConnection, path: str, body: bytes) -> float:
    start = time.perf_counter()
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        # The server closed the keep-alive connection (gunicorn recycles its worker): as a client
        # does, once more on a new connection, timed from the new start.
        connection.close()
        start = time.perf_counter()
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {payload[:300]!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per path (default 1000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-online-features-") as tmp:
        work = Path(tmp)
        repo, _ = make_store(work, rows_per_span=5000, spans=1)
        server = FeatureServer(repo, work / "feast-serve.log")
        upstream = Upstream(lambda body: ok(json.dumps({"predictions": [[0.5]]}).encode()))
        keyed_sidecar = sidecar(work, upstream.url, server.url, "keyed")
        plain_sidecar = sidecar(work, upstream.url, "", "plain")
        try:
            online = {}
            for area in range(1, 78):
                answer = server.get({"pickup_area": [area]})
                names_ = answer["metadata"]["feature_names"]
                online[area] = {n: r["values"][0] for n, r in zip(names_, answer["results"]) if n in FEATURES}
            rng = np.random.default_rng(7)
            path = serving_protocol.predict_path(MODEL)
            connections = {tag: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for tag, port in
                           (("keyed", keyed_sidecar.port), ("plain", plain_sidecar.port), ("feast", server.port))}
            times = {tag: [] for tag in connections}
            for i in range(args.requests + 50):   # the first 50 of each warm up and are not counted
                area = int(rng.integers(1, 78))
                trip = {"pickup_area": area, "fare": round(float(rng.uniform(4, 40)), 2), "payment_type": "Cash"}
                runs = [("keyed", path, {"instances": [trip]}),
                        ("plain", path, {"instances": [{**trip, **online[area]}]}),
                        ("feast", "/get-online-features",
                         {"feature_service": "taxi_area", "entities": {"pickup_area": [area]}})]
                for tag, target, document in (runs if i % 2 else runs[::-1]):
                    elapsed = timed_post(connections[tag], target, json.dumps(document).encode())
                    if i >= 50:
                        times[tag].append(elapsed * 1000)
        finally:
            for process in (keyed_sidecar, plain_sidecar):
                process.terminate()
                process.wait(30)
            upstream.stop()
            server.stop()
    p = {tag: (np.percentile(v, 50), np.percentile(v, 99)) for tag, v in times.items()}
    print(f"== serving by entity key: {args.requests} requests per path, one at a time, alternating; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'path':<44} {'p50 ms':>8} {'p99 ms':>8}")
    for tag, what in (("plain", "sidecar, rows carry the area features"),
                      ("keyed", "sidecar, features fetched by pickup_area"),
                      ("feast", "Feast feature server alone (direct)")):
        print(f"{what:<44} {p[tag][0]:>8.2f} {p[tag][1]:>8.2f}")
    print(f"added by the entity-key lookup: p50 +{p['keyed'][0] - p['plain'][0]:.2f} ms "
          f"(x{p['keyed'][0] / p['plain'][0]:.2f}), p99 +{p['keyed'][1] - p['plain'][1]:.2f} ms "
          f"(x{p['keyed'][1] / p['plain'][1]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
