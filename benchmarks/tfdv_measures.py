"""Drift measures computed the way TFDV computes them, plus PSI: what the drift benchmark
compares the drift rule with (benchmarks/bench_drift.py).

- `linf`: L-infinity distance between two categorical distributions (TFDV's LInftyDistance:
  counts normalised separately, largest absolute difference of any value).
- `histogram_jsd`: approximate Jensen-Shannon divergence between two numeric histograms, a port
  of TFDV's `JensenShannonDivergence(Histogram&, Histogram&)` (anomalies/metrics.cc): point and
  infinite buckets set aside, both histograms re-bucketed onto the union of their boundaries
  assuming a uniform spread inside each bucket, NaNs as a separate bucket, log base 2, capped at 1.
- `categorical_jsd`: TFDV's JSD over value->count maps.
- `psi`: population stability index over aligned buckets, with a small floor so empty buckets
  stay finite (TFDV has no PSI; the floor is the usual 1e-4).

A histogram here is `Histogram(buckets=[(low, high, count), ...], num_nan=n)`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from flywheel.drift.compare import psi  # one PSI, offline and online



@dataclass
class Histogram:
    buckets: list[tuple[float, float, float]] = field(default_factory=list)
    num_nan: float = 0.0

    @classmethod
    def from_proto(cls, proto) -> "Histogram":
        return cls([(b.low_value, b.high_value, b.sample_count) for b in proto.buckets], proto.num_nan)


def linf(base: dict[str, float], other: dict[str, float]) -> float:
    base_total, other_total = sum(base.values()), sum(other.values())
    if not base_total or not other_total:
        return 0.0
    keys = set(base) | set(other)
    return max(abs(base.get(k, 0.0) / base_total - other.get(k, 0.0) / other_total) for k in keys)


def categorical_jsd(base: dict[str, float], other: dict[str, float]) -> float:
    base_total, other_total = sum(base.values()), sum(other.values())
    if not base_total or not other_total:
        return 0.0
    total = 0.0
    for key in set(base) | set(other):
        p, q = base.get(key, 0.0) / base_total, other.get(key, 0.0) / other_total
        m = (p + q) / 2
        if p:
            total += p * math.log2(p / m)
        if q:
            total += q * math.log2(q / m)
    return min(total / 2, 1.0)


def categorical_psi(base: dict[str, float], other: dict[str, float]) -> float:
    keys = sorted(set(base) | set(other))
    return psi([base.get(k, 0.0) for k in keys], [other.get(k, 0.0) for k in keys])


def _strip(hist: Histogram) -> tuple[list[tuple[float, float, float]], dict[float, float], float]:
    finite, points, infinite = [], {}, 0.0
    for low, high, count in hist.buckets:
        if not (math.isfinite(low) and math.isfinite(high)):
            infinite += count
        elif low == high:
            points[low] = points.get(low, 0.0) + count
        else:
            finite.append((low, high, count))
    return finite, points, infinite


def _rebucket(boundaries: list[float], buckets: list[tuple[float, float, float]]) -> list[float]:
    """Counts of `buckets` spread uniformly onto the intervals between consecutive boundaries
    (every bucket edge is one of the boundaries, as in TFDV's RebucketHistogram)."""
    out: list[float] = []
    index, last = 0, len(boundaries) - 1
    for low, high, count in buckets:
        while low > boundaries[index]:
            out.append(0.0)
            index += 1
        if low == high and low == boundaries[index]:
            out.append(count)
            index += 1
            continue
        covered = []
        while high > boundaries[index]:
            covered.append(boundaries[index])
            index += 1
        covered.append(boundaries[index])
        for a, b in zip(covered, covered[1:]):
            out.append((b - a) / (high - low) * count)
    out.extend(0.0 for _ in range(index, last))
    return out


def align(base: Histogram, other: Histogram) -> tuple[list[float], list[float]]:
    """Both histograms as counts over the same buckets (TFDV's AlignHistograms)."""
    b_fin, b_pts, b_inf = _strip(base)
    o_fin, o_pts, o_inf = _strip(other)
    b_edges = {e for lo, hi, _ in b_fin for e in (lo, hi)}
    o_edges = {e for lo, hi, _ in o_fin for e in (lo, hi)}
    if b_edges != o_edges:
        boundaries = sorted(b_edges | o_edges)
        p, q = _rebucket(boundaries, b_fin), _rebucket(boundaries, o_fin)
    else:
        p, q = [c for *_, c in b_fin], [c for *_, c in o_fin]
    for point in sorted(set(b_pts) | set(o_pts)):
        p.append(b_pts.get(point, 0.0))
        q.append(o_pts.get(point, 0.0))
    if b_inf:
        p.append(b_inf), q.append(0.0)
    if o_inf:
        p.append(0.0), q.append(o_inf)
    if base.num_nan > 0 or other.num_nan > 0:
        p.extend([0.0, base.num_nan])
        q.extend([other.num_nan, 0.0])
    return p, q


def histogram_jsd(base: Histogram, other: Histogram) -> float:
    p, q = align(base, other)
    p_arr, q_arr = np.asarray(p, float), np.asarray(q, float)
    if p_arr.sum() <= 0 or q_arr.sum() <= 0:
        return 0.0
    p_arr, q_arr = p_arr / p_arr.sum(), q_arr / q_arr.sum()
    m = (p_arr + q_arr) / 2

    def kl(a: np.ndarray) -> float:
        mask = (a > 0) & (m > 0)
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))
    return min((kl(p_arr) + kl(q_arr)) / 2, 1.0)


def histogram_psi(base: Histogram, other: Histogram) -> float:
    p, q = align(base, other)
    return psi(p, q)


def histogram_on_edges(values: np.ndarray, base: Histogram) -> Histogram:
    """Served values counted into the baseline's finite buckets (edges inclusive on the right for
    the last one, as TFDV's histograms are). Values outside the baseline's range go into one
    extra bucket on each side reaching to the served min/max, where the baseline has no mass."""
    nan = np.isnan(values)
    finite = values[~nan & np.isfinite(values)]
    edges_buckets = [(lo, hi) for lo, hi, _ in base.buckets if math.isfinite(lo) and math.isfinite(hi) and hi > lo]
    if not edges_buckets:
        return Histogram([(float(v), float(v), 1.0) for v in finite], float(nan.sum()))
    lows = np.array([lo for lo, _ in edges_buckets])
    highs = np.array([hi for _, hi in edges_buckets])
    first, last = lows[0], highs[-1]
    inside = finite[(finite >= first) & (finite <= last)]
    # Bucket i holds [low_i, high_i); the last bucket also holds its high edge.
    index = np.clip(np.searchsorted(highs, inside, side="right"), 0, len(highs) - 1)
    counts = np.bincount(index, minlength=len(highs)).astype(float)
    buckets = [(float(lo), float(hi), float(c)) for lo, hi, c in zip(lows, highs, counts)]
    below, above = finite[finite < first], finite[finite > last]
    if below.size:
        buckets.insert(0, (float(below.min()), float(first), float(below.size)))
    if above.size:
        buckets.append((float(last), float(above.max()), float(above.size)))
    return Histogram(buckets, float(nan.sum()))


def equi_width_histogram(values: np.ndarray, num_buckets: int = 10) -> Histogram:
    """TFDV-style standard histogram: equal-width buckets between min and max, NaNs counted apart."""
    values = np.asarray(values, float)
    nan = np.isnan(values)
    finite = values[~nan]
    if finite.size == 0:
        return Histogram([], float(nan.sum()))
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        return Histogram([(low, high, float(finite.size))], float(nan.sum()))
    counts, edges = np.histogram(finite, bins=num_buckets, range=(low, high))
    return Histogram([(float(a), float(b), float(c)) for a, b, c in zip(edges, edges[1:], counts)], float(nan.sum()))
