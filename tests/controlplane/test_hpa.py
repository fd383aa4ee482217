"""The HorizontalPodAutoscaler for real: the dev overlay's HPA scales the Deployment on the
sidecars' `flywheel_requests_per_second`, served by prometheus-adapter with the rule in
manifests/addons/prometheus-adapter, from a real Prometheus scraping real sidecar processes.

What is real: the HPA controller (kube-controller-manager), the scale decisions and their
behavior policies, the aggregation layer, prometheus-adapter and its rule, Prometheus and its
rate(), the sidecar processes and the requests they count. What stands in: kwok runs the pods
(tests/support/pod_sidecars.py starts one sidecar process per pod), one small
TF Serving-compatible upstream answers for all of them, and prometheus-adapter also serves the
resource metrics API from the sidecars' process CPU, where a cluster runs metrics-server (the
HPA's CPU metric must be readable for it to scale down at all). One change to the manifests: the
scale-down stabilisation window is 30 s instead of 300 s, so the test waits minutes, not ten.

Cost: about 5 minutes (the rule's rate() window of 2 minutes has to drain after the load stops,
then the window, then the 25 %-per-minute policy). The replica counts over time are saved as a
PNG (build/controlplane/hpa-scaling.png, or $FLYWHEEL_PNG_DIR).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import ROOT, find, require_tool
from tests.support.hpa import METRIC, SAMPLE_S, Recorder, hpa_events, save_png, target_rps
from controlplane.cluster import wait_until
from tests.support.kubectl import in_namespace, server_side_apply, wait_rolled_out
from tests.support.net import free_port
from tests.support.pod_sidecars import Load, PodSidecars

NAMESPACE = "flywheel-hpa"
ADAPTER_VALUES = ROOT / "manifests/addons/prometheus-adapter/values.yaml"
STABILIZATION_S = 30
RATE = 160.0            # requests per second over all pods: 3.2 x the 50/s target
QUIET_S = 15            # before the load: the HPA holds minReplicas
HOLD_S = 30             # at maxReplicas under load: no flapping
SCALE_UP_WITHIN_S = 180
SCALE_DOWN_WITHIN_S = 420

# Stands in for metrics-server: the resource metrics API from the sidecars' own CPU and memory
# (prometheus_client's process collector), per pod and container, as metrics-server reports them.
_OVERRIDES = {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}, "node": {"resource": "node"}}
RESOURCE_RULES = {
    "cpu": {"containerQuery": "sum(rate(process_cpu_seconds_total{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
            "nodeQuery": "sum(rate(process_cpu_seconds_total{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
            "resources": {"overrides": _OVERRIDES}, "containerLabel": "container"},
    "memory": {"containerQuery": "sum(process_resident_memory_bytes{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
               "nodeQuery": "sum(process_resident_memory_bytes{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
               "resources": {"overrides": _OVERRIDES}, "containerLabel": "container"},
    "window": "1m",
}


def adapter_config() -> dict:
    """The manifests' custom rule exactly as the Helm chart writes it into the adapter's config."""
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    assert values["rules"]["default"] is False
    return {"rules": values["rules"]["custom"], "resourceRules": RESOURCE_RULES}


class Prometheus:
    def __init__(self, work: Path, targets: Path, scrape_interval: str):
        require_tool("prometheus", "run `make system-deps` (Debian package prometheus)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = work / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": scrape_interval, "scrape_timeout": "10s"},
            "scrape_configs": [{"job_name": "flywheel-serving-metrics", "metrics_path": "/metrics",
                                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "5s"}]}]}))
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            cwd=work, stdout=(work / "prometheus.log").open("wb"), stderr=subprocess.STDOUT)
        wait_until(lambda: urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200, 60, "Prometheus")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def hpa_objects(rendered) -> list[dict]:
    objects = in_namespace(rendered["dev"], NAMESPACE)
    hpa = find(objects, "HorizontalPodAutoscaler")
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = STABILIZATION_S
    return objects


@pytest.fixture(scope="module")
def scaling_run(plane, rendered, tmp_path_factory):
    # The dashboard test's model (trained by the pipeline's own steps) and small upstream.
    from tests.support.bundles import write_model_repository
    from tests.support.upstreams import SmallUpstream

    from tests.support.taxi_rows import make_frame, rows_of

    work = tmp_path_factory.mktemp("hpa")
    objects = hpa_objects(rendered)
    applied = server_side_apply(plane, objects)
    assert applied.returncode == 0, applied.stderr
    wait_rolled_out(plane, NAMESPACE)
    spec = find(objects, "HorizontalPodAutoscaler")["spec"]
    interval = find(objects, "ServiceMonitor")["spec"]["endpoints"][0]["interval"]

    stack = []
    try:
        upstream = SmallUpstream()
        stack.append(upstream.stop)
        sidecars = PodSidecars(plane, NAMESPACE, f"http://127.0.0.1:{upstream.port}",
                               write_model_repository(work / "model_repository"), work / "pods", work / "targets.json")
        sidecars.start()
        stack.append(sidecars.stop)
        prometheus = Prometheus(work, work / "targets.json", interval)
        stack.append(prometheus.stop)
        plane.start_prometheus_adapter(prometheus.url, adapter_config())
        wait_until(lambda: sidecars.ready_urls(), 90, "the first pod's sidecar ready")

        recorder = Recorder(plane, NAMESPACE, lambda: len(sidecars.ready_urls()))
        stack.append(recorder.stop)
        time.sleep(QUIET_S)
        load = Load(sidecars.ready_urls, RATE, json.dumps({"instances": rows_of(make_frame(1, seed=7))}).encode())
        recorder.mark("load on")
        load.start()
        try:
            wait_until(lambda: recorder.replicas() == spec["maxReplicas"], SCALE_UP_WITHIN_S,
                       f"scale-up to {spec['maxReplicas']} replicas", interval_s=1)
            recorder.mark("at max")
            time.sleep(HOLD_S)
        finally:
            achieved = load.stop()
            recorder.mark("load off")
        wait_until(lambda: recorder.replicas() == spec["minReplicas"], SCALE_DOWN_WITHIN_S,
                   f"scale-down to {spec['minReplicas']} replica", interval_s=1)
        recorder.mark("back at min")
        time.sleep(2 * SAMPLE_S)
        # The rows are final before anything reads them: the picture's series and the tests'
        # figures come from one list that no longer grows.
        recorder.stop()
        yield {"recorder": recorder, "spec": spec, "achieved": achieved, "load": load, "events": hpa_events(plane, NAMESPACE),
               "sidecar_errors": sidecars.errors, "png": picture(recorder, spec)}
    finally:
        for stop in reversed(stack):
            stop()


def test_scales_up_to_max_on_requests_per_second(scaling_run):
    recorder, spec = scaling_run["recorder"], scaling_run["spec"]
    assert scaling_run["achieved"] > 0.8 * RATE, f"load generator reached only {scaling_run['achieved']:.0f}/s"
    quiet = [r for r in recorder.rows if r["t"] < recorder.marks["load on"]]
    assert quiet and {r["replicas"] for r in quiet} == {spec["minReplicas"]}
    # The scale-up to the maximum is the requests-per-second metric's doing, as the controller
    # says it (the sidecar's CPU alone could not ask for that many pods at this rate).
    to_max = [e["message"] for e in scaling_run["events"] if f"New size: {spec['maxReplicas']};" in e["message"]]
    assert to_max == [f"New size: {spec['maxReplicas']}; reason: pods metric {METRIC} above target"], \
        [e["message"] for e in scaling_run["events"]]
    peak = max(r["rps"] for r in recorder.rows if r["rps"] is not None)
    assert peak > target_rps(spec), f"per-pod rate never above the target {target_rps(spec)}: {peak}"


def test_holds_max_replicas_while_the_load_lasts(scaling_run):
    recorder, spec = scaling_run["recorder"], scaling_run["spec"]
    held = [r["replicas"] for r in recorder.rows if recorder.marks["at max"] <= r["t"] <= recorder.marks["load off"]]
    assert held and set(held) == {spec["maxReplicas"]}
    assert not scaling_run["sidecar_errors"]


def test_scales_down_after_the_window_one_policy_step_at_a_time(scaling_run):
    recorder, spec = scaling_run["recorder"], scaling_run["spec"]
    after = [r for r in recorder.rows if r["t"] >= recorder.marks["load off"]]
    first_down = next(r["t"] for r in after if r["replicas"] < spec["maxReplicas"])
    assert first_down - recorder.marks["load off"] >= STABILIZATION_S
    # 25 % per 60 s (selectPolicy Min): never more than one pod at a time from 3, a minute apart.
    downs = [r for r in scaling_run["events"] if "below target" in r["message"]]
    sizes = [int(e["message"].split("New size: ")[1].split(";")[0]) for e in downs]
    assert sizes == list(range(spec["maxReplicas"] - 1, spec["minReplicas"] - 1, -1)), [e["message"] for e in downs]
    steps = [next(r["t"] for r in after if r["replicas"] <= size) for size in sizes]
    assert all(b - a >= 55 for a, b in zip(steps, steps[1:])), steps
    assert recorder.rows[-1]["replicas"] == spec["minReplicas"]


def test_replicas_over_time_png(scaling_run):
    data = scaling_run["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"HPA scaling picture: {scaling_run['png']}")


def picture(recorder, spec: dict) -> Path:
    out_dir = Path(os.environ.get("FLYWHEEL_PNG_DIR") or ROOT / "build" / "controlplane")
    title = (f"HPA on a real control plane: {RATE:g} req/s for "
             f"{recorder.marks['load off'] - recorder.marks['load on']:.0f} s (shaded), "
             f"scale-down window {STABILIZATION_S} s")
    return save_png(recorder, spec, title, "sidecar processes serving", out_dir / "hpa-scaling.png")
