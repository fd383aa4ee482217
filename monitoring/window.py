"""Served values of one model version, summarised in its baseline's bins (flywheel.drift).

Two views, both fed a batch at a time by the observer (never on the request path):
- the sliding window of the last `size` rows, as summaries, which the drift rule compares with
  the reference (per pod here, fleet-wide after summing pods' windows: monitoring/fleet.py);
- cumulative counts per exported bin since the process started, which Prometheus can sum
  across pods and difference over any window (`flywheel_drift_values_total`).

A batch is one chunk of the window; when the window holds more than `size` rows the oldest
chunks leave it, so it holds between `size` minus one chunk and `size` rows.
"""
from __future__ import annotations

import threading
from collections import deque

import numpy as np

from flywheel import drift
from monitoring.baseline import Baseline, DriftInput
from monitoring.joint_window import JointWindow

RECOMPUTE_EVERY = 1000   # evictions between exact re-sums of the window (float sums drift slowly)


def _empty(item: DriftInput) -> drift.Summary:
    return item.profile.empty()


def _minus(a: drift.Summary, b: drift.Summary) -> drift.Summary:
    if a.kind == drift.NUMERIC:
        return drift.NumericSummary(a.counts - b.counts, a.missing - b.missing, max(0.0, a.below - b.below),
                                    max(0.0, a.above - b.above))
    return drift.CategoricalSummary(a.counts - b.counts, a.missing - b.missing)


class DriftWindow:
    def __init__(self, baseline: Baseline, size: int):
        self.baseline = baseline
        self.size = size
        self.items = {i.name: i for i in baseline.inputs}
        if baseline.predictions is not None:
            self.items[baseline.predictions.name] = baseline.predictions
        self._lock = threading.Lock()
        self._chunks: deque[tuple[int, dict[str, drift.Summary]]] = deque()
        self._totals = {name: _empty(item) for name, item in self.items.items()}
        self.rows = 0                 # rows in the window
        self.generation = 0           # changes whenever the window does
        self._evictions = 0
        # Cumulative, for Prometheus: values per exported bin, missing values, rows.
        self.exported = {name: np.zeros(len(item.bins.labels), np.int64)
                         for name, item in self.items.items() if item.bins is not None}
        self.missing_total = {name: 0 for name in self.items}
        self.rows_total = 0
        # The joint check's summaries of the same chunks (None: the baseline has no joint reference).
        self.joint = JointWindow(baseline.joint) if baseline.joint is not None else None

    def add(self, rows: int, columns: dict[str, list]) -> None:
        """One batch: `rows` rows, and per column (and PREDICTIONS) its values, None where absent."""
        if rows <= 0:
            return
        if rows > self.size:   # only the newest `size` rows can stay in the window
            columns = {k: v[-self.size:] if len(v) == rows else v for k, v in columns.items()}
            rows = self.size
        chunk = {}
        parts: dict = {}
        for name, item in self.items.items():
            values = columns.get(item.column)
            if values:
                chunk[name] = item.summarize(values, parts)
        joint_part = self.joint.summarize(rows, columns) if self.joint is not None else None
        with self._lock:
            if joint_part is not None:
                self.joint.push(joint_part)
            for name, summary in chunk.items():
                self._totals[name] = self._totals[name] + summary
                if name in self.exported:
                    self.exported[name] += item_pool(self.items[name], summary)
                self.missing_total[name] += summary.missing
            self._chunks.append((rows, chunk))
            self.rows += rows
            self.rows_total += rows
            while self.rows > self.size and len(self._chunks) > 1:
                old_rows, old = self._chunks.popleft()
                self.rows -= old_rows
                for name, summary in old.items():
                    self._totals[name] = _minus(self._totals[name], summary)
                if self.joint is not None:
                    self.joint.pop()
                self._evictions += 1
            if self._evictions >= RECOMPUTE_EVERY:
                self._recompute_locked()
            self.generation += 1

    def _recompute_locked(self) -> None:
        totals = {name: _empty(item) for name, item in self.items.items()}
        for _, chunk in self._chunks:
            for name, summary in chunk.items():
                totals[name] = totals[name] + summary
        self._totals, self._evictions = totals, 0

    def summaries(self) -> tuple[int, int, dict[str, drift.Summary]]:
        """(generation, rows, summary per input) of the window now."""
        with self._lock:
            return self.generation, self.rows, dict(self._totals)

    def joint_summary(self) -> tuple[int, object]:
        """(generation, the joint summary of the window now, or None without a joint reference)."""
        with self._lock:
            return self.generation, (self.joint.total if self.joint is not None else None)

    def exported_counts(self) -> tuple[int, dict[str, np.ndarray], dict[str, int]]:
        with self._lock:
            return self.rows_total, {k: v.copy() for k, v in self.exported.items()}, dict(self.missing_total)


def item_pool(item: DriftInput, summary: drift.Summary) -> np.ndarray:
    return item.bins.pool(summary.counts).astype(np.int64)


def decide(baseline: Baseline, summaries: dict[str, drift.Summary], params) -> tuple[list, list]:
    """The drift rule on a window: (per feature input, for the predictions) FeatureDrift lists."""
    profiles = {i.name: i.profile for i in baseline.inputs}
    features = drift.compare(profiles, {k: v for k, v in summaries.items() if k in profiles}, params)
    predictions = []
    if baseline.predictions is not None and baseline.predictions.name in summaries:
        item = baseline.predictions
        predictions = drift.compare({item.name: item.profile}, {item.name: summaries[item.name]}, params)
    return features, predictions
