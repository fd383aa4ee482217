"""Drift of the whole fleet: every replica's window, summed, under the same rule.

Behind an HPA each replica sees a share of the traffic, and Prometheus can add counters across
pods but not p-values or distances. So every `fleet_interval_s` each replica publishes its
window's summaries (counts in the baseline's bins: they add up) to
`<log destination>/drift/<instance>.json`, reads every replica's file, sums those of the same
model version published within `fleet_stale_s`, and runs `flywheel.drift.compare` on the sum:
the fleet's numbers are the pipeline's rule on the union of the replicas' windows. Every replica
computes the same result, so alerts take the max over pods. Files of replicas gone for ten
times `fleet_stale_s` are deleted by whichever replica sees them. The joint drift check's
summary (count, sums, sums of products: monitoring/joint_window.py) travels in the same file and
is summed the same way, so the fleet's joint decision is the rule on the union of the windows.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from flywheel import drift, storage
from monitoring.baseline import Baseline

log = logging.getLogger(__name__)
DRIFT_DIR = "drift"


@dataclass
class FleetView:
    version: int
    instances: int = 0
    rows: int = 0
    summaries: dict[str, drift.Summary] = field(default_factory=dict)
    computed_at: float = 0.0
    features: list = field(default_factory=list)       # FeatureDrift per feature input
    predictions: list = field(default_factory=list)
    joint_summary: object = None                        # JointSummary of every window, when there is a reference
    joint: object = None                                # JointDrift on it


class FleetDrift:
    def __init__(self, destination: str, instance: str, stale_s: float, clock: Callable[[], float] = time.time):
        self.directory = storage.join(destination, DRIFT_DIR)
        self.instance = instance
        self.stale_s = stale_s
        self.clock = clock

    def publish(self, version: int, rows: int, summaries: dict[str, drift.Summary], joint_summary=None) -> None:
        document = {"instance": self.instance, "time": self.clock(), "version": version, "rows": rows,
                    "summaries": {name: s.to_dict() for name, s in summaries.items()}}
        if joint_summary is not None:
            document["joint"] = joint_summary.to_dict()
        storage.write_bytes(storage.join(self.directory, f"{self.instance}.json"), json.dumps(document).encode())

    def withdraw(self) -> None:
        """This replica stops: its window leaves the fleet's at once, not after fleet_stale_s."""
        storage.remove(storage.join(self.directory, f"{self.instance}.json"))

    def collect(self, baseline: Baseline) -> FleetView:
        """The sum of the fresh windows of `baseline`'s version, this replica's included."""
        items = {i.name: i for i in baseline.inputs}
        if baseline.predictions is not None:
            items[baseline.predictions.name] = baseline.predictions
        view = FleetView(baseline.version, summaries={n: i.profile.empty() for n, i in items.items()})
        if baseline.joint is not None:
            view.joint_summary = baseline.joint.empty()
        now = self.clock()
        for name in storage.listdir(self.directory):
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = storage.join(self.directory, name)
            try:
                document = json.loads(storage.read_bytes(path))
                age = now - float(document["time"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced right now, or not ours: next round
            if age > 10 * self.stale_s:
                try:
                    storage.remove(path)
                except OSError:
                    pass
                continue
            if age > self.stale_s or document.get("version") != baseline.version:
                continue
            try:
                summaries = {n: items[n].profile.from_dict(d) for n, d in document["summaries"].items() if n in items}
                joint_part = (baseline.joint.summary_from_dict(document["joint"])
                              if baseline.joint is not None and document.get("joint") else None)
            except (ValueError, KeyError, TypeError) as error:
                log.warning("fleet drift: %s left out (%s)", name, error)
                continue
            for n, summary in summaries.items():
                view.summaries[n] = view.summaries[n] + summary
            if joint_part is not None:
                view.joint_summary = view.joint_summary + joint_part
            view.instances += 1
            view.rows += int(document.get("rows", 0))
        view.computed_at = now
        return view
