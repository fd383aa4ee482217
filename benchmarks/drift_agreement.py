"""How far two reference profiles of the same data are apart: an exact profile (from all values,
the in-memory path) against one read off TFDV's sketches (the streaming and Beam paths).

- numeric: the largest gap between the two profiles' CDFs over every edge of either (a KS
  distance: the share of rows a quantile boundary is off by), and the change of the drift
  rule's own effect size between them (Wasserstein distance in reference standard deviations);
- categorical: the largest change of a level's share (L-infinity), and whether the counts are equal.
"""
from __future__ import annotations

import math

import numpy as np

from flywheel.drift.profiles import CategoricalProfile, NumericProfile, Profile


def cdf_gap(a: NumericProfile, b: NumericProfile) -> float:
    grid = np.union1d(a.edges, b.edges)
    if grid.size == 0:
        return 0.0
    return float(np.max(np.abs(a.cdf(grid) - b.cdf(grid))))


def wasserstein_sd(a: NumericProfile, b: NumericProfile) -> float:
    """W1 between the two profiles' CDFs (piecewise linear between edges), in a's sd."""
    grid = np.union1d(a.edges, b.edges)
    if grid.size < 2 or not a.sd or not math.isfinite(a.sd):
        return 0.0
    gaps = np.abs(a.cdf(grid) - b.cdf(grid))
    return float(np.sum((gaps[1:] + gaps[:-1]) / 2 * np.diff(grid)) / a.sd)


def share_gap(a: CategoricalProfile, b: CategoricalProfile) -> float:
    levels = set(a.levels) | set(b.levels)
    share_a = {level: c / max(a.n, 1.0) for level, c in zip(a.levels, a.counts)}
    share_b = {level: c / max(b.n, 1.0) for level, c in zip(b.levels, b.counts)}
    return max((abs(share_a.get(v, 0.0) - share_b.get(v, 0.0)) for v in levels), default=0.0)


def gap(a: Profile, b: Profile) -> dict:
    """{"kind", "gap", ...}: see the module docstring; "gap" is the headline number."""
    if isinstance(a, NumericProfile) and isinstance(b, NumericProfile):
        return {"kind": "numeric", "gap": cdf_gap(a, b), "w1_sd": wasserstein_sd(a, b), "n": (a.n, b.n)}
    if isinstance(a, CategoricalProfile) and isinstance(b, CategoricalProfile):
        same = dict(zip(a.levels, a.counts)) == dict(zip(b.levels, b.counts))
        return {"kind": "categorical", "gap": share_gap(a, b), "counts_equal": same, "n": (a.n, b.n)}
    return {"kind": "mismatch", "gap": 1.0, "n": (a.n, b.n)}


def gaps(a: dict[str, Profile], b: dict[str, Profile]) -> dict[str, dict]:
    """gap() of every profile both sets hold (a profile only one holds is a mismatch)."""
    out = {name: gap(a[name], b[name]) for name in sorted(set(a) & set(b))}
    out.update({name: {"kind": "missing", "gap": 1.0} for name in sorted(set(a) ^ set(b))})
    return out
