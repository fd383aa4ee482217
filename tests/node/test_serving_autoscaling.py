"""The serving HPA on real pods and live traffic: requests sent to the Service's ClusterIP by
clients that keep their connections; the sidecars count them, Prometheus scrapes the pods it
discovers, prometheus-adapter serves the per-pod rate, and the HPA controller scales the
Deployment, whose new pods start under kubelet and take requests once Ready.

The local overlay's HPA (1 to 3 replicas) with two test settings: a per-pod target of 10 req/s
instead of 50, so that a load these two cores carry beside everything else asks for three pods,
and a scale-down window of 30 s with one step (100 % per 15 s) instead of 5 minutes and 25 % a
minute (the control-plane HPA test checks those steps). A picture of the run is saved as
build/node/hpa-scaling.png and the HPA's own account of it as build/node/hpa.txt.
"""
from __future__ import annotations

import json
import time

import pytest

from flywheel.loopback import wait_until
from tests.support.cluster import ROOT
from tests.support.hpa import SAMPLE_S, Recorder, hpa_events, new_size, save_png, target_rps
from tests.support.node_overlay import (NAMESPACE, SERVING, pods, requests_counted, serving_endpoints,
                                        service_url)
from tests.support.pod_sidecars import Load
from tests.support.taxi_rows import make_frame, rows_of

TARGET_RPS = 10
RATE = 40.0               # requests per second in all: 4 x the target, so the maximum of 3 is asked for
CLIENTS = 8               # each keeping its connections
STABILIZATION_S = 30
QUIET_S = 10
HOLD_S = 30
SCALE_UP_WITHIN_S = 240
SPREAD_WITHIN_S = 120     # two connection lifetimes (monitoring.connection_max_age_s) and then some
SCALE_DOWN_WITHIN_S = 360
BODY = json.dumps({"instances": rows_of(make_frame(1, seed=11))}).encode()
OUT = ROOT / "build" / "node"


def patch_hpa(plane) -> dict:
    hpa = json.loads(plane.kubectl("get", "hpa", SERVING, "-n", NAMESPACE, "-o", "json").stdout)
    (index,) = [i for i, m in enumerate(hpa["spec"]["metrics"]) if m["type"] == "Pods"]
    ops = [{"op": "replace", "path": f"/spec/metrics/{index}/pods/target/averageValue", "value": str(TARGET_RPS)},
           {"op": "replace", "path": "/spec/behavior/scaleDown/stabilizationWindowSeconds", "value": STABILIZATION_S},
           {"op": "replace", "path": "/spec/behavior/scaleDown/policies",
            "value": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}]
    plane.kubectl("patch", "hpa", SERVING, "-n", NAMESPACE, "--type=json", "-p", json.dumps(ops))
    return json.loads(plane.kubectl("get", "hpa", SERVING, "-n", NAMESPACE, "-o", "json").stdout)["spec"]


def counts(plane) -> dict[str, float]:
    """Requests each serving pod's sidecar has counted, by pod name."""
    return {p["metadata"]["name"]: requests_counted(p) for p in pods(plane) if p["status"].get("podIP")}


@pytest.fixture(scope="module")
def scaling_run(monitored):
    plane = monitored["plane"]
    spec = patch_hpa(plane)
    wait_until(lambda: {p["metadata"]["name"] for p in pods(plane)} == serving_endpoints(plane)
               and len(serving_endpoints(plane)) == spec["minReplicas"], 180,
               f"{spec['minReplicas']} serving pod(s) before the load")
    recorder = Recorder(plane, NAMESPACE, lambda: len(serving_endpoints(plane)))
    url = service_url(plane)
    try:
        time.sleep(QUIET_S)
        before = counts(plane)
        load = Load(lambda: [url], RATE, BODY, clients=CLIENTS)
        recorder.mark("load on")
        load.start()
        try:
            wait_until(lambda: len(serving_endpoints(plane)) == spec["maxReplicas"], SCALE_UP_WITHIN_S,
                       f"{spec['maxReplicas']} serving pods, every one Ready", interval_s=1,
                       detail=lambda: "\n" + plane.kubectl("describe", "hpa", SERVING, "-n", NAMESPACE).stdout)
            recorder.mark("at max")
            at_max = plane.kubectl("get", "hpa", SERVING, "-n", NAMESPACE).stdout
            # Every pod takes requests, the ones the HPA added too: the clients' kept-alive
            # connections are closed by the sidecars at their maximum age, and the new ones the
            # Service spreads over all three.
            wait_until(lambda: len(counts(plane)) == spec["maxReplicas"] and all(
                n > before.get(pod, 0) for pod, n in counts(plane).items()), SPREAD_WITHIN_S,
                "requests counted by every serving pod", interval_s=2, detail=lambda: f" counts {counts(plane)}")
            served = {pod: n - before.get(pod, 0) for pod, n in counts(plane).items()}
            held_from = counts(plane)
            time.sleep(HOLD_S)
            held = {pod: n - held_from.get(pod, 0) for pod, n in counts(plane).items()}
        finally:
            achieved = load.stop()
            recorder.mark("load off")
        wait_until(lambda: recorder.replicas() == spec["minReplicas"], SCALE_DOWN_WITHIN_S,
                   f"scale-down to {spec['minReplicas']} replica", interval_s=1)
        recorder.mark("back at min")
        time.sleep(2 * SAMPLE_S)
    finally:
        recorder.stop()
    events = hpa_events(plane, NAMESPACE)
    run = {"recorder": recorder, "spec": spec, "achieved": achieved, "load": load, "events": events,
           "before": before, "served": served, "held": held, "at_max": at_max}
    run["png"] = save_png(recorder, spec, f"HPA on the kubelet node: {RATE:g} req/s to the Service for "
                          f"{recorder.marks['load off'] - recorder.marks['load on']:.0f} s (shaded), "
                          f"target {TARGET_RPS} req/s per pod", "pods in the Service's endpoints",
                          OUT / "hpa-scaling.png")
    write_report(run)
    return run


def write_report(run: dict) -> None:
    marks, rows = run["recorder"].marks, run["recorder"].rows
    lines = [f"$ kubectl get hpa -n {NAMESPACE}   # {marks['at max'] - marks['load on']:.0f} s after "
             f"{RATE:g} req/s began", run["at_max"].rstrip(), "",
             "SuccessfulRescale events:"]
    lines += [f"  {e['message']}" for e in run["events"]]
    lines += ["", "requests each pod's sidecar counted, from the load's start until every pod had some: "
              + ", ".join(f"{pod} {n:.0f}" for pod, n in sorted(run["served"].items())),
              f"and in the {HOLD_S} s after that, at 3 replicas: "
              + ", ".join(f"{pod} {n:.0f}" for pod, n in sorted(run["held"].items())),
              f"load: {run['load'].ok} answered 200, {run['load'].failed} failed; "
              f"replicas back to {rows[-1]['replicas']} {marks['back at min'] - marks['load off']:.0f} s "
              f"after the load stopped"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hpa.txt").write_text("\n".join(lines) + "\n")


def test_scales_up_to_max_on_requests_per_second_through_the_service(scaling_run):
    recorder, spec = scaling_run["recorder"], scaling_run["spec"]
    assert scaling_run["achieved"] > 0.8 * RATE, f"the load reached only {scaling_run['achieved']:.0f}/s"
    quiet = [r for r in recorder.rows if r["t"] < recorder.marks["load on"]]
    assert quiet and {r["replicas"] for r in quiet} == {spec["minReplicas"]}
    # The requests-per-second metric asked for the maximum, as the controller says it.
    to_max = [e["message"] for e in scaling_run["events"] if new_size(e) == spec["maxReplicas"]]
    assert to_max and all("flywheel_requests_per_second above target" in m for m in to_max), \
        [e["message"] for e in scaling_run["events"]]
    peak = max(r["rps"] for r in recorder.rows if r["rps"] is not None)
    assert peak > target_rps(spec), f"per-pod rate never above the target {target_rps(spec)}: {peak}"


def test_every_pod_takes_requests_and_none_fails_while_pods_are_added(scaling_run):
    served, spec, load = scaling_run["served"], scaling_run["spec"], scaling_run["load"]
    assert len(served) == spec["maxReplicas"] and all(n > 0 for n in served.values()), served
    assert load.failed == 0, dict(load.errors)


def test_scales_back_down_when_the_load_stops(scaling_run):
    recorder, spec = scaling_run["recorder"], scaling_run["spec"]
    after = [r for r in recorder.rows if r["t"] >= recorder.marks["load off"]]
    first_down = next(r["t"] for r in after if r["replicas"] < spec["maxReplicas"])
    assert first_down - recorder.marks["load off"] >= STABILIZATION_S
    downs = [e["message"] for e in scaling_run["events"] if "below target" in e["message"]]
    assert downs and new_size(scaling_run["events"][-1]) == spec["minReplicas"], downs
    assert recorder.rows[-1]["replicas"] == spec["minReplicas"] == recorder.rows[-1]["serving"]


def test_the_run_is_drawn(scaling_run):
    data = scaling_run["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"HPA on the node: {scaling_run['png']}, {OUT / 'hpa.txt'}")
