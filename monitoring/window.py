"""Sliding windows of served rows and scores, and the drift of each against a Baseline.

Appends happen on the observer thread in batches; `drift()` runs at Prometheus scrape time
(metrics.DriftCollector), so the request path never does drift maths. Each feature keeps its own
ring of the last `size` values it was present in (missing values are not values, as in TFDV).
"""
from __future__ import annotations

import threading
from collections import Counter

import numpy as np

from monitoring import drift
from monitoring.baseline import Baseline


class NumericRing:
    def __init__(self, size: int):
        self.values = np.empty(size, float)
        self.count = 0
        self.next = 0

    def extend(self, values: list[float]) -> None:
        for value in values[-len(self.values):]:
            self.values[self.next] = value
            self.next = (self.next + 1) % len(self.values)
        self.count = min(self.count + len(values), len(self.values))

    def snapshot(self) -> np.ndarray:
        return self.values[:self.count].copy()


class CategoricalRing:
    """Ring of values plus running counts, so a scrape reads the counts without a pass over the ring."""

    def __init__(self, size: int):
        self.ring: list[str | None] = [None] * size
        self.next = 0
        self.counts: Counter[str] = Counter()

    def extend(self, values: list[str]) -> None:
        for value in values[-len(self.ring):]:
            old = self.ring[self.next]
            if old is not None:
                self.counts[old] -= 1
                if not self.counts[old]:
                    del self.counts[old]
            self.ring[self.next] = value
            self.counts[value] += 1
            self.next = (self.next + 1) % len(self.ring)

    @property
    def count(self) -> int:
        return sum(self.counts.values())


class DriftWindow:
    def __init__(self, baseline: Baseline, size: int):
        self.baseline = baseline
        self.size = size
        self._lock = threading.Lock()
        self.numeric = {n: NumericRing(size) for n in baseline.numeric}
        self.categorical = {n: CategoricalRing(size) for n in baseline.categorical}
        self.scores = NumericRing(size)
        self.rows = 0

    def add(self, rows: list[dict], scores: list[float]) -> None:
        """Rows already schema-checked: values of the wrong type were left out by the caller."""
        numeric: dict[str, list[float]] = {n: [] for n in self.numeric}
        categorical: dict[str, list[str]] = {n: [] for n in self.categorical}
        for row in rows:
            for name, bucket in numeric.items():
                value = row.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    bucket.append(float(value))
            for name, bucket in categorical.items():
                value = row.get(name)
                if value is not None and not isinstance(value, (dict, list, bool, float)):
                    bucket.append(str(value))
        with self._lock:
            for name, values in numeric.items():
                self.numeric[name].extend(values)
            for name, values in categorical.items():
                self.categorical[name].extend(values)
            self.scores.extend(scores)
            self.rows = min(self.rows + len(rows), self.size)

    def feature_drift(self) -> list[tuple[str, str, float]]:
        """[(feature, measure, value)] for every feature with served values in the window."""
        with self._lock:
            numeric = {n: r.snapshot() for n, r in self.numeric.items() if r.count}
            categorical = {n: dict(r.counts) for n, r in self.categorical.items() if r.counts}
        out = []
        for name, counts in categorical.items():
            base = self.baseline.categorical[name]
            out += [(name, "linf", drift.linf(base, counts)), (name, "jsd", drift.categorical_jsd(base, counts)),
                    (name, "psi", drift.categorical_psi(base, counts))]
        for name, values in numeric.items():
            base = self.baseline.numeric[name]
            served = drift.histogram_on_edges(values, base)
            out += [(name, "jsd", drift.histogram_jsd(base, served)), (name, "psi", drift.histogram_psi(base, served))]
        return out

    def prediction_drift(self) -> list[tuple[str, float]]:
        with self._lock:
            scores = self.scores.snapshot()
        if not scores.size or self.baseline.predictions is None:
            return []
        served = drift.histogram_on_edges(scores, self.baseline.predictions)
        return [("jsd", drift.histogram_jsd(self.baseline.predictions, served)),
                ("psi", drift.histogram_psi(self.baseline.predictions, served))]
