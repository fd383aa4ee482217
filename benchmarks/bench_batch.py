"""Offline predictions: batch scoring's rows/s and peak memory against plain in-memory scoring, and
the sidecar's lookup latency against an online prediction through the same sidecar.

    .venv/bin/python benchmarks/bench_batch.py [--sizes 100000,1000000] [--requests 2000]
    make bench-batch [BATCH_SIZES=100000,1000000]

Model: a version of the default dataset trained and pushed by the pipeline's steps
(pipelines.chain, 2 epochs). Data: the default generator's span 3 (it drifts) with a key column.
Each measurement runs in a fresh process (so peak RSS is that run's own): `batch` is
components/batch_score.py with the key column (streamed reading, the SERVING checks, TFDV
statistics, the drift rule, Parquet shards, the SQLite index); `baseline` is the whole CSV read
with pandas and scored in one in-memory call of the same SavedModel (components/model_inputs.py,
what evaluate does). Time counts from after the imports to the end; peak RSS is the process's
resident set sampled every 5 ms while it works (benchmarks/bench_data.py), and its growth over
the resident size after the imports.
Lookup: the development model server and the sidecar as processes on loopback; one client sends
one-row predict requests over a keep-alive connection, sequentially: keyed rows the batch holds
(answered by the sidecar) and the same rows without the key (answered by the model server
through the sidecar); p50/p99 of each.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from flywheel import names, params, serving_protocol  # noqa: E402
from flywheel.loopback import free_port  # noqa: E402
from tools import datagen  # noqa: E402

KEY = "trip_id"


# --- one measurement, in a child process -------------------------------------------------------
def child(mode: str, data: str, version_dir: str, out: str) -> None:
    import pandas as pd

    import tensorflow  # noqa: F401  (imports are not counted: both paths need them)
    import tensorflow_data_validation  # noqa: F401

    from components import batch_score, model_inputs
    from bench_data import PeakRss
    with PeakRss() as memory:
        started = time.perf_counter()
        if mode == "batch":
            summary = batch_score.run(data, version_dir, out, names.DEFAULT_MODEL_NAME, 1,
                                      params.BatchParams(key_column=KEY))
            rows = summary["rows_scored"]
        else:
            frame = pd.read_csv(data)
            outputs = model_inputs.Scorer(version_dir)(frame)
            rows = len(outputs[names.OUTPUT_SCORE])
        seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "peak": memory.peak, "growth": memory.peak - memory.start}))


def measure(mode: str, data: Path, version_dir: Path, work: Path) -> dict:
    out = work / f"out-{mode}-{data.stem}"
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(data), str(version_dir), str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {data} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the model and the data -------------------------------------------------------------------
def keyed_span(rows: int, path: Path) -> Path:
    span = datagen.generate_span(params.DataParams(rows_per_span=rows), 3)
    span.insert(0, KEY, [f"trip-{i}" for i in range(rows)])
    span.to_csv(path, index=False)
    return path


# --- lookup latency ---------------------------------------------------------------------------
def wait(port: int, path: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"127.0.0.1:{port}{path} did not answer 200 in {timeout_s}s")


def latencies(port: int, path: str, bodies: list[bytes]) -> tuple[np.ndarray, int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seconds, answered = [], 0
    for body in bodies:
        start = time.perf_counter()
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        seconds.append(time.perf_counter() - start)
        answered += response.getheader("X-Flywheel-Answered-By") == "batch"
    return np.asarray(seconds) * 1000, answered


def lookup_bench(repository: Path, batch_root: Path, data: Path, work: Path, requests: int) -> dict:
    import pandas as pd
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings["batch"].update({"key_column": KEY, "output_root": str(batch_root), "reload_s": 1.0})
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(settings))
    rest, grpc_port, sidecar = free_port(), free_port(), free_port()
    logs = open(work / "servers.log", "wb")
    servers = [subprocess.Popen([sys.executable, "-m", "devserver", "--host", "127.0.0.1", "--rest-port", str(rest),
                                 "--grpc-port", str(grpc_port), "--model-repository", str(repository),
                                 "--model-name", names.DEFAULT_MODEL_NAME], cwd=ROOT, stdout=logs, stderr=logs)]
    servers.append(subprocess.Popen([sys.executable, "-m", "monitoring", "--params", str(params_file), "--port",
                                     str(sidecar), "--upstream", f"http://127.0.0.1:{rest}", "--model-repository",
                                     str(repository), "--model-name", names.DEFAULT_MODEL_NAME, "--log-dir",
                                     str(work / "log"), "--log-destination", str(work / "logs")],
                                    cwd=ROOT, stdout=logs, stderr=logs))
    try:
        wait(sidecar, "/healthz/ready")
        rows = pd.read_csv(data, nrows=requests).drop(columns=[datagen.LABEL, datagen.PII_COLUMN])
        records = json.loads(rows.to_json(orient="records"))
        path = serving_protocol.predict_path(names.DEFAULT_MODEL_NAME)
        keyed = [json.dumps({"instances": [r]}).encode() for r in records]
        online = [json.dumps({"instances": [{k: v for k, v in r.items() if k != KEY}]}).encode() for r in records]
        latencies(sidecar, path, keyed[:200] + online[:200])          # warm-up (and the lookup loaded)
        lookup_ms, answered = latencies(sidecar, path, keyed)
        online_ms, _ = latencies(sidecar, path, online)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
    return {"lookup": lookup_ms, "online": online_ms, "answered": answered}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "DATA", "VERSION_DIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        print("training a version (pipelines.chain, 2 epochs) ...", flush=True)
        from bench_sidecar import train_version   # the same version: span 1 of the default data, 2 epochs
        repository, _ = train_version(work)
        version_dir = repository / names.DEFAULT_MODEL_NAME / "1"
        print(f"\n{'rows':>9}  {'path':<9} {'seconds':>8} {'rows/s':>9} {'peak RSS':>9} {'growth':>9}  vs baseline")
        last = None
        for size in sizes:
            data = keyed_span(size, work / f"span-{size}.csv")
            base = measure("baseline", data, version_dir, work)
            batch = measure("batch", data, version_dir, work)
            assert batch["rows"] == base["rows"] == size, (batch, base)
            for mode, m in (("baseline", base), ("batch", batch)):
                ratio = (f"{(m['rows'] / m['seconds']) / (base['rows'] / base['seconds']):.2f}x rows/s, "
                         f"{m['peak'] / base['peak']:.2f}x peak") if mode == "batch" else ""
                print(f"{size:>9,}  {mode:<9} {m['seconds']:>8.1f} {m['rows'] / m['seconds']:>9,.0f} "
                      f"{m['peak'] / 2**20:>7,.0f}MB {m['growth'] / 2**20:>7,.0f}MB  {ratio}", flush=True)
            last = (data, work / f"out-batch-{data.stem}")
        # The lookup serves the last (largest) batch: the run directory is published as LATEST.
        from flywheel import batch_runs
        data, out = last
        root = work / "batch"
        root.mkdir()
        os.rename(out, root / out.name)
        summary = json.loads((root / out.name / names.BATCH_SUMMARY).read_text())
        batch_runs.publish(str(root), out.name, summary)
        # The lookup answers only for the served version; the batch was scored by version 1, served.
        result = lookup_bench(repository, root, data, work, args.requests)
        p = {k: np.percentile(result[k], [50, 99]) for k in ("lookup", "online")}
        print(f"\nlookup vs online through the sidecar ({args.requests} one-row requests each, "
              f"{summary['lookup_keys']:,} keys; {result['answered']} answered from the batch):")
        for k in ("lookup", "online"):
            print(f"  {k:<7} p50 {p[k][0]:6.2f} ms   p99 {p[k][1]:6.2f} ms")
        print(f"  lookup/online: p50 {p['lookup'][0] / p['online'][0]:.2f}x, p99 {p['lookup'][1] / p['online'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
