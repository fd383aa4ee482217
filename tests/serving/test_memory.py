"""Memory is bounded in bytes: the sidecar process (`python -m monitoring`, default settings)
takes 100 invalid 4 MiB requests and then 1,500 valid requests of 2,000 rows each, and its
resident memory stays within 300 MiB (params.yaml bounds the queue, the kept predictions and the
request bodies in flight in bytes).

The upstream is a small TF Serving-shaped stub in its own process (it answers a prediction per
row, or 400 as TF Serving does for rows without inputs), so what is measured is the sidecar; the
baseline it loads is a version the pipeline's steps trained. Cost: about a minute."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flywheel import serving_logs
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, ROOT, push_version, wait_http
from tests.support.taxi_rows import make_frame, rows_of

RSS_LIMIT_MIB = 300
MIB = 1 << 20


def _stub(port: int) -> None:
    """TF Serving's model status and :predict for version 1 of MODEL_NAME."""
    from aiohttp import web

    async def status(request):
        return web.json_response({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

    async def predict(request):
        try:
            rows = json.loads(await request.read())["instances"]
        except (ValueError, KeyError, TypeError) as err:
            return web.json_response({"error": f"JSON Parse error: {err}"}, status=400)
        if not rows or not all(isinstance(r, dict) and r for r in rows):
            return web.json_response({"error": "instances: missing inputs"}, status=400)
        return web.json_response({"predictions": [0.25 + (i % 50) / 100 for i in range(len(rows))]})

    app = web.Application(client_max_size=8 * MIB)
    app.router.add_get(f"/v1/models/{MODEL_NAME}", status)
    app.router.add_post(f"/v1/models/{MODEL_NAME}" + "/versions/{v}:predict", predict)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def _post(url: str, body: bytes, expect: bool = False) -> int:
    import urllib.error
    import urllib.request
    headers = {"Content-Type": "application/json", **({"Expect": "100-continue"} if expect else {})}
    req = urllib.request.Request(url, data=body, headers=headers)   # http.client reads past 100 Continue
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code


def test_rss_stays_bounded_under_large_invalid_and_large_valid_requests(exported_versions, tmp_path):
    repository = tmp_path / "repository"
    push_version(exported_versions, repository, 1)
    stub_port, port = free_port(), free_port()
    stub = multiprocessing.get_context("spawn").Process(target=_stub, args=(stub_port,), daemon=True)
    stub.start()
    log = tmp_path / "sidecar.log"
    proc = subprocess.Popen([sys.executable, "-m", "monitoring", "--port", str(port), "--upstream",
                             f"http://127.0.0.1:{stub_port}", "--model-repository", str(repository),
                             "--model-name", MODEL_NAME, "--log-dir", str(tmp_path / "local"),
                             "--log-destination", str(tmp_path / "logs"), "--pod", "mem"],
                            cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    peak = [0.0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], _rss_mib(proc.pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.05)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz/ready", 60)
        started_mib = _rss_mib(proc.pid)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict"
        garbage = b"x" * (4 * MIB - 1024)
        empty_rows = b'{"instances": [' + b"{}," * ((4 * MIB - 1024) // 3 - 10) + b"{}]}"   # valid JSON, rejected
        big = json.dumps({"instances": rows_of(make_frame(2000, seed=8))}).encode()
        with ThreadPoolExecutor(4) as pool:
            # half with `Expect: 100-continue`, as curl sends bodies over 1 MB
            invalid = list(pool.map(lambda i: _post(url, garbage if i % 2 else empty_rows, expect=i % 4 < 2),
                                    range(100)))
        with ThreadPoolExecutor(8) as pool:
            valid = list(pool.map(lambda _: _post(url, big), range(1500)))
        deadline = time.monotonic() + 120
        # Let the observer finish what is queued: a record leaves the queue's depth when its batch
        # is taken, and is counted written when the batch's lines are, so wait for the counts.
        while time.monotonic() < deadline:
            text = _metrics(port)
            if _value(text, "flywheel_prediction_log_queue_depth") == 0 and _accounted(text) >= 1600:
                break
            time.sleep(0.5)
        final_mib = _rss_mib(proc.pid)
        high_water = _rss_mib(proc.pid, "VmHWM")
        done.set()
        text = _metrics(port)
    finally:
        done.set()
        proc.terminate()
        proc.wait(120)
        stub.terminate()
    assert invalid == [400] * 100 and valid == [200] * 1500
    written = _value(text, 'flywheel_prediction_log_records_total{outcome="written"}')
    dropped = _value(text, 'flywheel_prediction_log_records_total{outcome="dropped"}')
    assert _accounted(text) == written + dropped == 1600
    memory = _value(text, 'flywheel_feedback_memory_bytes{model="taxi_tips"}')
    window = _value(text, 'flywheel_drift_window_rows{model="taxi_tips"}')
    print(f"\nRSS: {started_mib:.0f} MiB ready, peak {max(peak[0], high_water):.0f} MiB (limit {RSS_LIMIT_MIB}), "
          f"{final_mib:.0f} MiB at the end; {written:.0f} records written, {dropped:.0f} dropped (queue full); "
          f"kept predictions {memory / MIB:.1f} MiB; window {window:.0f} rows")
    assert high_water <= RSS_LIMIT_MIB and peak[0] <= RSS_LIMIT_MIB
    assert window <= 2000
    # the 50 rejected requests of 1.4 million empty rows each counted no "missing" anomaly
    assert 'flywheel_schema_anomalies_total{feature="fare",kind="missing"' not in text
    records, skipped = serving_logs.read_all(str(tmp_path / "logs"), serving_logs.LOGGED_PREDICTIONS_DIR)
    assert skipped == 0 and len(records) == written
    rejected = [r for r in records if r["status"] == 400]
    assert len(rejected) == 100 and all("features" not in r and r["request_bytes"] > 3 * MIB for r in rejected)


def _metrics(port: int) -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        return resp.read().decode()


def _value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " ") or (("{" not in sample) and line.startswith(sample + "{")):
            return float(line.rsplit(" ", 1)[1])
    pytest.fail(f"{sample} not in /metrics")


def _accounted(text: str) -> float:
    """Records the prediction log wrote or dropped so far."""
    return sum(_value(text, f'flywheel_prediction_log_records_total{{outcome="{outcome}"}}')
               for outcome in ("written", "dropped"))
