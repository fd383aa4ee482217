"""Disruptions of the serving Deployment on real pods, each under live traffic through the
Service, with not one request failing: a pod evicted as a node drain evicts it (the PDB admits one
and refuses a second while the first is replaced), a rollout restart, and a new model version
pushed to the repository the pods read. What keeps answers flowing is the manifests' own: the
readiness probes, the sidecar's preStop and closing window (kept-alive clients leave after their
answer), TF Serving's longer preStop, maxUnavailable 0 and the PDB.

The HPA is held at two replicas for these tests, so that only the disruption changes the pods.
"""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from flywheel import serving_logs
from flywheel.loopback import wait_until
from flywheel.metric_names import MODEL_VERSION
from tests.support.cluster import ROOT
from tests.support.node_overlay import (MODEL, NAMESPACE, SERVING, all_ready, pods, push_owned,
                                        requests_counted, serving_endpoints, service_url, sidecar_metric)
from tests.support.pod_sidecars import Load
from tests.support.taxi_rows import make_frame, rows_of

REPLICAS = 2
RATE = 20.0
CLIENTS = 8               # each keeping its connections, as the many clients of a Service do
SETTLE_S = 3              # load after the disruption is over, to see that nothing fails late either
REPLACED_WITHIN_S = 300
BODY = json.dumps({"instances": rows_of(make_frame(3, seed=13))}).encode()
MODEL_SERVER_PORT = 8501  # the tf-serving container's REST port
REPORT = ROOT / "build" / "node" / "disruptions.txt"


@pytest.fixture(scope="module")
def held(deployed):
    plane = deployed["plane"]
    ops = [{"op": "replace", "path": "/spec/minReplicas", "value": REPLICAS},
           {"op": "replace", "path": "/spec/maxReplicas", "value": REPLICAS}]
    plane.kubectl("patch", "hpa", SERVING, "-n", NAMESPACE, "--type=json", "-p", json.dumps(ops))
    wait_until(lambda: len(serving_endpoints(plane)) == REPLICAS and all_ready(plane), REPLACED_WITHIN_S,
               f"{REPLICAS} serving pods Ready")
    REPORT.unlink(missing_ok=True)
    return deployed


class Loaded:
    """Load on the Service for the duration of a `with` block; afterwards `.check(what)` asserts
    that it kept its rate and lost nothing, and adds a line to the report."""

    def __init__(self, plane):
        url = service_url(plane)
        self.load = Load(lambda: [url], RATE, BODY, clients=CLIENTS)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        self.load.start()
        return self.load

    def __exit__(self, *exc) -> None:
        time.sleep(SETTLE_S)
        self.achieved = self.load.stop()
        self.seconds = time.monotonic() - self.started

    def check(self, what: str) -> None:
        load = self.load
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as report:
            report.write(f"{what}: {load.ok} requests answered 200, {load.failed} failed, in {self.seconds:.0f} s "
                         f"at {RATE:g} req/s\n")
        assert self.achieved > 0.8 * RATE and load.failed == 0, (self.achieved, load.ok, dict(load.errors))


def evict(plane, pod: str):
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NAMESPACE}}
    return plane.kubectl("create", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction", "-f", "-",
                         stdin=json.dumps(body), check=False)


def replaced(plane, old: set[str]) -> bool:
    serving = serving_endpoints(plane)
    return len(serving) == REPLICAS and not serving & old and all_ready(plane)


def served_versions(pod: dict) -> set[str]:
    url = f"http://{pod['status']['podIP']}:{MODEL_SERVER_PORT}/v1/models/{MODEL}"
    with urllib.request.urlopen(url, timeout=10) as response:
        status = json.load(response)["model_version_status"]
    return {s["version"] for s in status if s["state"] == "AVAILABLE"}


def test_a_pod_evicted_under_load_is_replaced_the_pdb_refuses_a_second_and_its_log_is_shipped(held):
    plane, repository = held["plane"], held["repository"]
    first, second = sorted(serving_endpoints(plane))
    before = {p["metadata"]["name"]: requests_counted(p) for p in pods(plane)}
    loaded = Loaded(plane)
    with loaded:
        # Both pods answering, so the one evicted has a prediction log to ship.
        wait_until(lambda: all(requests_counted(p) > before[p["metadata"]["name"]] for p in pods(plane)), 60,
                   "requests answered by both serving pods")
        admitted = evict(plane, first)
        refused = evict(plane, second)
        assert admitted.returncode == 0, admitted.stderr
        # 429 from the eviction API: the budget's one disruption is taken until the first is replaced.
        assert refused.returncode != 0 and "disruption budget" in refused.stderr, refused.stderr
        wait_until(lambda: first not in {p["metadata"]["name"] for p in pods(plane)}
                   and len(serving_endpoints(plane)) == REPLICAS and all_ready(plane), REPLACED_WITHIN_S,
                   f"{first} gone and {REPLICAS} serving pods Ready")
        # With the first replaced, the budget admits an eviction again.
        assert second in serving_endpoints(plane)
    loaded.check(f"{first} evicted, replaced")
    # The evicted pod's sidecar closed and shipped its prediction log on its way out.
    root = serving_logs.logs_root(str(repository), MODEL)
    shipped = wait_until(lambda: [f for f in serving_logs.list_files(root, serving_logs.LOGGED_PREDICTIONS_DIR)
                                  if f.rsplit("/", 1)[-1].startswith(first + "-")], 60,
                         f"{first}'s prediction log shipped to the repository")
    assert all(f.endswith(serving_logs.SEGMENT_SUFFIX) for f in shipped)


def test_a_rollout_restart_under_load_fails_no_request(held):
    plane = held["plane"]
    old = serving_endpoints(plane)
    loaded = Loaded(plane)
    with loaded:
        time.sleep(5)
        plane.kubectl("rollout", "restart", f"deployment/{SERVING}", "-n", NAMESPACE)
        plane.kubectl("rollout", "status", f"deployment/{SERVING}", "-n", NAMESPACE, f"--timeout={REPLACED_WITHIN_S}s",
                      timeout=REPLACED_WITHIN_S + 30)
        wait_until(lambda: replaced(plane, old), 60, "every serving pod replaced")
    loaded.check("rollout restart of both pods")


def test_a_version_pushed_under_load_is_served_by_every_pod_and_fails_no_request(held):
    plane, repository, exported = held["plane"], held["repository"], held["exported"]
    loaded = Loaded(plane)
    with loaded:
        time.sleep(5)
        push_owned(exported, repository, 2)
        wait_until(lambda: all(served_versions(p) == {"2"} for p in pods(plane)), 120,
                   "every serving pod's model server on version 2",
                   detail=lambda: f" {[(p['metadata']['name'], served_versions(p)) for p in pods(plane)]}")
        # And every sidecar sends its requests to version 2 (the version it logs with each).
        wait_until(lambda: all(sidecar_metric(p, MODEL_VERSION) == 2 for p in pods(plane)), 60,
                   "every sidecar on version 2")
    loaded.check("version 2 pushed and loaded by both pods")
