"""A new version is swapped in under load with zero failed requests, the sidecar follows it (new
baseline, new window), and every logged prediction carries the version that answered it: the
two versions score the same rows differently, so a record logged under the wrong version would
show the other version's scores. (The hypothesis fuzz suite is test_fuzz.py.)"""
from __future__ import annotations

import json
import threading
import time
import urllib.request

from flywheel import bundle, serving_logs
from serving.rest_client import RestClient
from tests.support.servers import MODEL_NAME, push_version, start_dev_server
from tests.support.taxi_rows import make_frame, rows_of

ROWS = rows_of(make_frame(3, seed=12))


def scores(url: str, version: int) -> list[float]:
    req = urllib.request.Request(f"{url}/v1/models/{MODEL_NAME}/versions/{version}:predict",
                                 data=json.dumps({"instances": ROWS}).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["predictions"]


def test_push_under_load_swaps_version_and_logs_the_version_that_answered(exported_versions, sidecar_factory,
                                                                           tmp_path):
    repository = tmp_path / "repo"
    push_version(exported_versions, repository, 1)
    server = start_dev_server(repository, tmp_path, poll_seconds=0.2)
    try:
        sidecar = sidecar_factory(server.rest_url, repository, segment_max_age_s=0.5)
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
        first = scores(server.rest_url, 1)
        push_version(exported_versions, repository, 2)
        deadline = time.monotonic() + 60
        while RestClient(server.rest_url, MODEL_NAME).available_versions() != [2] and time.monotonic() < deadline:
            time.sleep(0.1)
        second = scores(server.rest_url, 2)
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
        sidecar.drain()
        time.sleep(1.5)   # the open segment ages past segment_max_age_s and ships
        records, _ = serving_logs.read_all(sidecar.config.log_destination, serving_logs.LOGGED_PREDICTIONS_DIR)
        logged = [(r["version"], r["predictions"]) for r in records if r["status"] == 200]
        assert len(logged) == len(results) and {v for v, _ in logged} == {1, 2}
        wrong = [v for v, p in logged if p != {1: first, 2: second}[v]]
        assert not wrong, f"{len(wrong)} of {len(logged)} records carry another version's scores"
    finally:
        server.stop()
