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
import math
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import ROOT, find, require_tool
from controlplane.cluster import wait_until
from tests.support.kubectl import SERVING, in_namespace, server_side_apply, wait_rolled_out
from tests.support.net import free_port
from tests.support.pod_sidecars import Load, PodSidecars

NAMESPACE = "flywheel-hpa"
ADAPTER_VALUES = ROOT / "manifests/addons/prometheus-adapter/values.yaml"
METRIC = "flywheel_requests_per_second"
STABILIZATION_S = 30
RATE = 160.0            # requests per second over all pods: 3.2 x the 50/s target
QUIET_S = 15            # before the load: the HPA holds minReplicas
HOLD_S = 30             # at maxReplicas under load: no flapping
SCALE_UP_WITHIN_S = 180
SCALE_DOWN_WITHIN_S = 420
SAMPLE_S = 2.0

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


def target_rps(spec: dict) -> float:
    (pods,) = [m["pods"] for m in spec["metrics"] if m["type"] == "Pods" and m["pods"]["metric"]["name"] == METRIC]
    return quantity(pods["target"]["averageValue"])


def quantity(text: str) -> float:
    """A Kubernetes quantity as the HPA status writes metric values ("53133m", "12", "1k")."""
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6}
    return float(text[:-1]) * suffixes[text[-1]] if text[-1] in suffixes else float(text)


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


class Recorder:
    """Every SAMPLE_S: the Deployment's replicas, the HPA's status and the sidecars running."""

    def __init__(self, plane, sidecars: PodSidecars):
        self.plane, self.sidecars, self.rows = plane, sidecars, []
        self.t0 = time.monotonic()
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="hpa-recorder")
        self._thread.start()

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic() - self.t0

    def _run(self):
        while not self._stop.is_set():
            try:
                self.rows.append(self.sample())
            except (RuntimeError, KeyError, ValueError, subprocess.TimeoutExpired):
                pass  # a slow API call: the next sample follows
            self._stop.wait(SAMPLE_S)

    def sample(self) -> dict:
        hpa = json.loads(self.plane.kubectl("get", "hpa", SERVING, "-n", NAMESPACE, "-o", "json").stdout)
        deployment = json.loads(self.plane.kubectl("get", "deployment", SERVING, "-n", NAMESPACE, "-o", "json").stdout)
        status = hpa.get("status", {})
        rps = cpu = None
        for metric in status.get("currentMetrics") or []:
            if metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == METRIC:
                rps = quantity(metric["pods"]["current"]["averageValue"])
            if metric["type"] == "Resource" and metric["resource"]["name"] == "cpu":
                cpu = metric["resource"]["current"].get("averageUtilization")
        return {"t": time.monotonic() - self.t0, "replicas": deployment["spec"]["replicas"],
                "desired": status.get("desiredReplicas"), "rps": rps, "cpu": cpu,
                "sidecars": len(self.sidecars.ready_urls())}

    def replicas(self) -> int:
        return self.rows[-1]["replicas"] if self.rows else -1

    def stop(self):
        self._stop.set()
        self._thread.join(30)


def hpa_objects(rendered) -> list[dict]:
    objects = in_namespace(rendered["dev"], NAMESPACE)
    hpa = find(objects, "HorizontalPodAutoscaler")
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = STABILIZATION_S
    return objects


def hpa_events(plane) -> list[dict]:
    events = json.loads(plane.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                                      f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={SERVING}",
                                      "-o", "json").stdout)["items"]
    return sorted((e for e in events if e["reason"] == "SuccessfulRescale"),
                  key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")


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

        recorder = Recorder(plane, sidecars)
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
        yield {"recorder": recorder, "spec": spec, "achieved": achieved, "load": load, "events": hpa_events(plane),
               "sidecar_errors": sidecars.errors, "png": save_png(recorder, spec)}
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


def save_png(recorder: Recorder, spec: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(os.environ.get("FLYWHEEL_PNG_DIR") or ROOT / "build" / "controlplane")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = recorder.rows
    t = [r["t"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5))
    top.step(t, [r["replicas"] for r in rows], where="post", label="Deployment replicas", linewidth=2)
    top.plot(t, [r["sidecars"] for r in rows], linestyle=":", label="sidecar processes serving")
    top.axhline(spec["maxReplicas"], color="grey", linestyle="--", linewidth=0.8)
    top.axhline(spec["minReplicas"], color="grey", linestyle="--", linewidth=0.8)
    top.set_ylabel("replicas")
    top.set_ylim(0, spec["maxReplicas"] + 1)
    top.legend(loc="upper right")
    target = target_rps(spec)
    bottom.plot(t, [r["rps"] if r["rps"] is not None else math.nan for r in rows], label=f"{METRIC} (per pod, HPA)")
    bottom.axhline(target, color="red", linestyle="--", linewidth=0.8, label=f"target {target:g}/s")
    bottom.set_ylabel("requests/s per pod")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    for axis in (top, bottom):
        axis.axvspan(recorder.marks["load on"], recorder.marks["load off"], color="orange", alpha=0.12)
    top.set_title(f"HPA on a real control plane: {RATE:g} req/s for "
                  f"{recorder.marks['load off'] - recorder.marks['load on']:.0f} s (shaded), "
                  f"scale-down window {STABILIZATION_S} s")
    fig.tight_layout()
    out = out_dir / "hpa-scaling.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
