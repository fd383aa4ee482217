"""The joint drift check (flywheel/drift/joint.py) on the sidecar's sliding window.

The window's rows reach it a batch at a time in the observer thread, never on the request path:
each batch becomes one JointSummary (count, sums and sums of products of the encoded columns,
about 4 ms per 1,000 rows of the benchmark's six features), pushed beside the per-feature chunk
and dropped with it, so both views cover the same rows. The decision is computed from the
summed summary at scrape time (about 0.1 ms whatever the window's size). Summaries add up across
pods: monitoring/fleet.py publishes this window's with the per-feature ones, and the fleet's
joint decision is the rule on the sum of every replica's window.
"""
from __future__ import annotations

from collections import deque
from typing import Mapping

from flywheel.drift import joint

RECOMPUTE_EVERY = 1000   # evictions between exact re-sums (float sums drift slowly)


class JointWindow:
    """Joint summaries of the window's chunks, in the order the window holds them. Not locked:
    its owner (monitoring/window.py DriftWindow) calls it under the window's lock."""

    def __init__(self, profile: joint.JointProfile):
        self.profile = profile
        self._parts: deque[joint.JointSummary] = deque()
        self.total = profile.empty()
        self._evictions = 0

    def summarize(self, rows: int, columns: Mapping[str, list]) -> joint.JointSummary:
        """One batch's summary (outside the lock: the costly part)."""
        return self.profile.summarize(columns, rows)

    def push(self, part: joint.JointSummary) -> None:
        self._parts.append(part)
        self.total = self.total + part

    def pop(self) -> None:
        """The oldest chunk leaves the window."""
        self.total = self.total - self._parts.popleft()
        self._evictions += 1
        if self._evictions >= RECOMPUTE_EVERY:
            total = self.profile.empty()
            for part in self._parts:
                total = total + part
            self.total, self._evictions = total, 0
