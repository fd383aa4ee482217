"""A new version is swapped in under load with zero failed requests, the sidecar follows it (new
baseline), and a few thousand random and malformed requests neither crash the sidecar nor go uncounted."""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import urllib.request

import aiohttp

from serving.rest_client import RestClient

from flywheel import bundle
from tests.support.servers import MODEL_NAME, push_version, start_dev_server
from tests.support.taxi_rows import make_frame, rows_of

ROWS = rows_of(make_frame(3, seed=12))


def test_push_under_load_swaps_version_without_failed_requests(exported_versions, sidecar_factory, tmp_path):
    repository = tmp_path / "repo"
    push_version(exported_versions, repository, 1)
    server = start_dev_server(repository, tmp_path, poll_seconds=0.2)
    try:
        sidecar = sidecar_factory(server.rest_url, repository)
        client = RestClient(sidecar.url, MODEL_NAME)
        results: list = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    results.append(tuple(client.predict_rows(ROWS)))
                except Exception as err:  # any failure is what this test looks for
                    results.append(err)
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        push_version(exported_versions, repository, 2)
        deadline = time.monotonic() + 60
        while RestClient(server.rest_url, MODEL_NAME).available_versions() != [2] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        failures = [r for r in results if isinstance(r, Exception)]
        assert not failures, failures[:3]
        assert len(set(results)) == 2, "both versions answered during the run"
        deadline = time.monotonic() + 10
        while sidecar.metric("flywheel_model_version", {"model": MODEL_NAME}) != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sidecar.metric("flywheel_model_version", {"model": MODEL_NAME}) == 2
        assert sidecar.metric("flywheel_model_pushed_timestamp_seconds", {"model": MODEL_NAME}) == \
            bundle.read_metadata(str(exported_versions[2]))["pushed_at"]
        assert sidecar.state.window.baseline.version == 2
    finally:
        server.stop()


def _fuzz_cases(n: int, seed: int = 0) -> list[tuple[str, str, bytes]]:
    rng = random.Random(seed)
    good = json.dumps({"instances": ROWS}).encode()
    junk_values = [None, True, -1, 1e308, float("nan"), "", "x" * 300, [], {}, [[1]], {"b64": "!!"}]

    def mutated_row():
        row = dict(rng.choice(ROWS))
        for _ in range(rng.randint(1, 3)):
            action = rng.random()
            key = rng.choice(list(row) + ["extra", "rider_email"])
            if action < 0.4:
                row[key] = rng.choice(junk_values)
            elif action < 0.7:
                row.pop(key, None)
            else:
                row[key] = rng.choice(ROWS)[rng.choice(list(ROWS[0]))]
        return row

    cases = []
    for _ in range(n):
        kind = rng.random()
        path = f"/v1/models/{MODEL_NAME}:predict"
        if kind < 0.15:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        elif kind < 0.3:
            body = good[: rng.randint(0, len(good) - 1)]  # truncated JSON
        elif kind < 0.6:
            body = json.dumps({"instances": [mutated_row() for _ in range(rng.randint(1, 3))]}).encode()
        elif kind < 0.7:
            body = json.dumps(rng.choice([[], 1, "s", {"inputs": 3}, {"instances": {}}, {"instances": []},
                                          {"inputs": {"fare": [1.0, 2.0]}}, {"instances": ROWS, "inputs": {}}])).encode()
        elif kind < 0.8:
            path = rng.choice(["/v1/models/nope:predict", f"/v1/models/{MODEL_NAME}/versions/77:predict",
                               f"/v1/models/{MODEL_NAME}:explode", "/v2/whatever", "/v1/models/%00:predict"])
            body = good
        else:
            body = good
        cases.append((rng.choice(["POST"] * 9 + ["PUT"]), path, body))
    return cases


def test_fuzz_never_crashes_and_counts_every_request(dev_server, sidecar_factory):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository)
    cases = _fuzz_cases(2000)

    async def send_all():
        codes = []
        sem = asyncio.Semaphore(16)
        async with aiohttp.ClientSession() as session:
            async def one(method, path, body):
                async with sem:
                    async with session.request(method, sidecar.url + path, data=body,
                                               headers={"Content-Type": "application/json"}) as resp:
                        payload = await resp.read()
                        if resp.status != 200:
                            assert "error" in json.loads(payload), payload[:200]
                        codes.append(resp.status)
            await asyncio.gather(*(one(*case) for case in cases))
        return codes
    codes = asyncio.run(send_all())
    sidecar.drain()
    assert len(codes) == len(cases) and set(codes) <= {200, 400, 404}
    assert urllib.request.urlopen(sidecar.url + "/healthz/live", timeout=5).status == 200
    counted = {code: sidecar.metric("flywheel_requests_total", {"model": MODEL_NAME, "code": str(code)})
               for code in set(codes)}
    assert counted == {code: codes.count(code) for code in set(codes)}
    errors = sum(sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": kind})
                 for kind in ("bad_json", "bad_request", "unknown_model"))
    assert errors == sum(1 for c in codes if c != 200)
    assert sidecar.metric("flywheel_errors_total", {"model": MODEL_NAME, "kind": "bad_json"}) > 100
    logged = sum(sidecar.metric("flywheel_prediction_log_records_total", {"outcome": o}) for o in ("written", "dropped"))
    predict_calls = sum(1 for m, p, _ in cases if m == "POST" and p.endswith(":predict") and f"/{MODEL_NAME}" in p)
    assert logged == predict_calls
    assert sidecar.metric("flywheel_schema_anomalies_total",
                          {"model": MODEL_NAME, "feature": "__unknown__", "kind": "unknown"}) > 0
