"""Watching the serving HPA act: its status and the Deployment's replicas sampled over time, its
rescale events, and the picture of both (the control-plane HPA test on kwok pods, the real-node
one on real pods)."""
from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from pathlib import Path

from tests.support.kubectl import SERVING

METRIC = "flywheel_requests_per_second"
SAMPLE_S = 2.0


def quantity(text: str) -> float:
    """A Kubernetes quantity as the HPA status writes metric values ("53133m", "12", "1k")."""
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6}
    return float(text[:-1]) * suffixes[text[-1]] if text[-1] in suffixes else float(text)


def target_rps(spec: dict) -> float:
    (pods,) = [m["pods"] for m in spec["metrics"] if m["type"] == "Pods" and m["pods"]["metric"]["name"] == METRIC]
    return quantity(pods["target"]["averageValue"])


def hpa_events(plane, namespace: str) -> list[dict]:
    """The HPA's SuccessfulRescale events, oldest first."""
    events = json.loads(plane.kubectl("get", "events", "-n", namespace, "--field-selector",
                                      f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={SERVING}",
                                      "-o", "json").stdout)["items"]
    return sorted((e for e in events if e["reason"] == "SuccessfulRescale"),
                  key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")


def new_size(event: dict) -> int:
    return int(event["message"].split("New size: ")[1].split(";")[0])


class Recorder:
    """Every SAMPLE_S: the Deployment's replicas, the HPA's status and `serving()` (how many pods
    actually answer, as the caller counts them)."""

    def __init__(self, plane, namespace: str, serving):
        self.plane, self.namespace, self.serving, self.rows = plane, namespace, serving, []
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
        get = lambda kind: json.loads(self.plane.kubectl("get", kind, SERVING, "-n", self.namespace,  # noqa: E731
                                                         "-o", "json").stdout)
        hpa, deployment = get("hpa"), get("deployment")
        status = hpa.get("status", {})
        rps = cpu = None
        for metric in status.get("currentMetrics") or []:
            if metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == METRIC:
                rps = quantity(metric["pods"]["current"]["averageValue"])
            if metric["type"] == "Resource" and metric["resource"]["name"] == "cpu":
                cpu = metric["resource"]["current"].get("averageUtilization")
        return {"t": time.monotonic() - self.t0, "replicas": deployment["spec"]["replicas"],
                "ready": deployment["status"].get("readyReplicas", 0), "desired": status.get("desiredReplicas"),
                "rps": rps, "cpu": cpu, "serving": self.serving()}

    def replicas(self) -> int:
        return self.rows[-1]["replicas"] if self.rows else -1

    def stop(self):
        """Stop sampling: the rows are final before anything reads them."""
        self._stop.set()
        self._thread.join(30)


def save_png(recorder: Recorder, spec: dict, title: str, serving_label: str, out: Path) -> Path:
    """Replicas and pods serving over time above the per-pod rate the HPA read, the load shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    rows = recorder.rows
    t = [r["t"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5))
    top.step(t, [r["replicas"] for r in rows], where="post", label="Deployment replicas", linewidth=2)
    top.plot(t, [r["serving"] for r in rows], linestyle=":", label=serving_label)
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
    top.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
