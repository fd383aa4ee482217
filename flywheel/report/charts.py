"""What a chart of one feature draws: the reference's and the current sample's shares in bins a
person reads, computed from a drift profile and a summary in its bins (flywheel/drift).

The drift rule counts values in up to a hundred quantile bins of unequal width; drawn as they are,
they show nothing. A numeric feature is redrawn as a histogram of equal-width bins over the
reference's range (a long tail cut at a bin edge within its 0.5%-99.5% quantiles, so one outlier
does not squash the picture into one bar), the values outside the drawn range in a bar at each side;
inside a quantile bin values are taken as evenly spread, as the rule's CDF takes them. A feature
whose reference is a few point masses (a count such as passengers) gets one bar per value. A
categorical feature gets one bar per level: the levels that matter most (the largest share on
either side) and the rest pooled, values the reference did not list in a bar of their own.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from flywheel.drift.profiles import CategoricalProfile, CategoricalSummary, NumericProfile, NumericSummary

HISTOGRAM = "histogram"     # numeric, equal-width bins in order, drawn as columns
ORDERED = "ordered"         # discrete values in order (point masses, hours, weekdays), drawn as columns
LEVELS = "levels"           # categories, drawn as horizontal bars

HISTOGRAM_BINS = 30
MAX_LEVELS = 12             # categories drawn one by one; the rest are pooled
MAX_ORDERED = 31            # integer-coded levels (hour, day of month) drawn in order up to this many
MAX_POINT_MASSES = 24       # a numeric reference of at most this many values is drawn value by value
TAIL = 0.005                # long tails: draw the 0.5%-99.5% quantile range
LONG_TAIL = 0.05            # a tail is long when it adds more than 5% to the drawn range


@dataclasses.dataclass(frozen=True)
class Bar:
    label: str                  # what the bar counts: "1.5 – 1.8", "Cash", "> 42.1", "3 more levels"
    reference: float            # share of the reference's present values
    current: float | None       # share of the current sample's present values; None: not known


@dataclasses.dataclass(frozen=True)
class Chart:
    kind: str                                   # HISTOGRAM | ORDERED | LEVELS
    bars: tuple[Bar, ...]
    under: Bar | None = None                    # HISTOGRAM: values below the drawn range
    over: Bar | None = None                     # HISTOGRAM: values above it
    low: float = math.nan                       # HISTOGRAM: the drawn range
    high: float = math.nan
    note: str = ""                              # said under the chart (e.g. why a side is missing)

    @property
    def all_bars(self) -> tuple[Bar, ...]:
        return tuple(b for b in (self.under, *self.bars, self.over) if b is not None)

    @property
    def has_current(self) -> bool:
        return any(b.current is not None for b in self.bars)


def number(x: float) -> str:
    """A value as a short label: 3 significant digits, no exponent for everyday magnitudes."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) < 1e9:
        return f"{int(x):,}" if abs(x) >= 1e4 else f"{int(x)}"
    if 1e-3 <= abs(x) < 1e6:
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return f"{x:.2e}"


def _shares(counts: np.ndarray | None) -> np.ndarray | None:
    if counts is None:
        return None
    total = float(np.sum(counts))
    return np.asarray(counts, float) / total if total > 0 else np.zeros(len(counts))


def _bar(label: str, reference: float, current: float | None) -> Bar:
    return Bar(label, float(reference), None if current is None else float(current))


# --- numeric ---------------------------------------------------------------------------------
def _cumulative(profile: NumericProfile, counts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Count at or below each x, with counts in the profile's bins: bin i is (edges[i-1], edges[i]],
    values spread evenly inside a bin, a point-mass bin all at its upper edge."""
    edges = profile.edges
    before = np.concatenate([[0.0], np.cumsum(counts)])           # count in bins 0..i-1
    i = np.searchsorted(edges, x, side="left")
    out = np.where(i >= edges.size, before[-1], 0.0)
    at_first = i == 0
    out = np.where(at_first & (x >= edges[0]), counts[0], out)
    inner = (i > 0) & (i < edges.size)
    j = i[inner]
    lo, hi = edges[j - 1], edges[j]
    frac = np.where(profile.atoms[j] | (x[inner] >= hi), 1.0, (x[inner] - lo) / np.where(hi > lo, hi - lo, 1.0))
    out[inner] = before[j] + counts[j] * np.clip(frac, 0.0, 1.0)
    return out


def _quantile(profile: NumericProfile, q: float) -> float:
    """The reference's q-quantile, from its bins (inverse of the piecewise-linear CDF)."""
    cum = np.cumsum(profile.counts) / profile.n
    i = int(np.searchsorted(cum, q, side="left"))
    i = min(max(i, 1), profile.edges.size - 1)
    lo, hi = profile.edges[i - 1], profile.edges[i]
    before = cum[i - 1]
    inside = profile.counts[i] / profile.n
    if profile.atoms[i] or inside <= 0:
        return float(hi)
    return float(lo + (hi - lo) * min(max((q - before) / inside, 0.0), 1.0))


def _drawn_range(profile: NumericProfile) -> tuple[float, float]:
    """The reference's range, a long tail cut at a bin edge inside the 0.5%-99.5% quantiles, so the
    tail bars hold whole bins: exact counts on both sides."""
    low, high = profile.minimum, profile.maximum
    q_low, q_high = _quantile(profile, TAIL), _quantile(profile, 1 - TAIL)
    core = q_high - q_low
    if core > 0:
        if q_low - low > LONG_TAIL * core:
            low = float(profile.edges[np.searchsorted(profile.edges, q_low, side="left")])
        if high - q_high > LONG_TAIL * core:
            high = float(profile.edges[np.searchsorted(profile.edges, q_high, side="right") - 1])
    return float(low), float(high)


def _point_mass_chart(profile: NumericProfile, summary: NumericSummary | None) -> Chart:
    atoms = np.flatnonzero(profile.atoms)
    rest = ~profile.atoms
    ref = np.append(profile.counts[atoms], profile.counts[rest].sum())
    cur = None if summary is None else np.append(summary.counts[atoms], summary.counts[rest].sum())
    ref_s, cur_s = _shares(ref), _shares(cur)
    bars = [_bar(number(profile.edges[a]), ref_s[k], None if cur_s is None else cur_s[k]) for k, a in enumerate(atoms)]
    if ref[-1] > 0 or (cur is not None and cur[-1] > 0):
        bars.append(_bar("other values", ref_s[-1], None if cur_s is None else cur_s[-1]))
    return Chart(ORDERED, tuple(bars))


def numeric_chart(profile: NumericProfile, summary: NumericSummary | None = None,
                  bins: int = HISTOGRAM_BINS) -> Chart:
    if profile.n <= 0 or profile.edges.size == 0:
        return Chart(HISTOGRAM, (), note="the reference has no values")
    discrete = float(profile.counts[profile.atoms].sum()) >= 0.99 * profile.n
    if discrete and profile.atoms.sum() <= MAX_POINT_MASSES:
        return _point_mass_chart(profile, summary)
    low, high = _drawn_range(profile)
    values = profile.edges[np.flatnonzero(profile.atoms)]
    if discrete and np.all(values == np.round(values)):
        # Integer codes (areas, counts): bins of whole numbers, each value inside one bin.
        width = math.ceil((high - low + 1) / bins)
        bins = math.ceil((high - low + 1) / width)
        low, high = low - 0.5, low - 0.5 + bins * width
    if not high > low:
        high = low + max(abs(low), 1.0) * 1e-6
    cuts = np.linspace(low, high, bins + 1)
    sides = [profile.counts] + ([] if summary is None else [summary.counts.astype(float)])
    drawn = []
    for counts in sides:
        at = _cumulative(profile, counts, cuts)
        below = float(_cumulative(profile, counts, np.array([np.nextafter(low, -np.inf)]))[0])
        inside = np.diff(np.concatenate([[below], at[1:]]))
        total = float(np.sum(counts))
        drawn.append((below / total if total else 0.0, np.maximum(inside, 0.0) / (total or 1.0),
                      max(total - at[-1], 0.0) / (total or 1.0)))
    ref, cur = drawn[0], (drawn[1] if len(drawn) > 1 else None)
    bars = tuple(_bar(f"{number(cuts[k])} – {number(cuts[k + 1])}", ref[1][k], None if cur is None else cur[1][k])
                 for k in range(bins))

    def tail(label: str, side: int) -> Bar | None:
        r, c = ref[2 * side], (None if cur is None else cur[2 * side])
        return _bar(label, r, c) if r > 0 or (c or 0) > 0 else None

    return Chart(HISTOGRAM, bars, under=tail(f"< {number(low)}", 0), over=tail(f"> {number(high)}", 1),
                 low=low, high=high)


# --- categorical -----------------------------------------------------------------------------
def _integer_coded(levels: tuple[str, ...]) -> bool:
    return bool(levels) and len(levels) <= MAX_ORDERED and all(level.lstrip("-").isdigit() for level in levels)


def categorical_chart(profile: CategoricalProfile, summary: CategoricalSummary | None = None,
                      max_levels: int = MAX_LEVELS) -> Chart:
    if profile.n <= 0 and (summary is None or summary.n <= 0):
        return Chart(LEVELS, (), note="no values on either side")
    ref = _shares(profile.counts)
    cur = None if summary is None else _shares(summary.counts)
    listed = len(profile.levels)
    unlisted = _bar("values not in the reference's list", ref[listed], None if cur is None else cur[listed])
    show_unlisted = unlisted.reference > 0 or (unlisted.current or 0) > 0
    if _integer_coded(profile.levels):
        # Hours, weekdays, months, area codes: in their natural order, every one drawn.
        order = sorted(range(listed), key=lambda k: int(profile.levels[k]))
        bars = [_bar(profile.levels[k], ref[k], None if cur is None else cur[k]) for k in order]
        return Chart(ORDERED, tuple(bars + ([unlisted] if show_unlisted else [])))
    weight = ref[:listed] if cur is None else np.maximum(ref[:listed], cur[:listed])
    order = sorted(range(listed), key=lambda k: (-weight[k], k))
    shown, pooled = order[:max_levels], order[max_levels:]
    bars = [_bar(profile.levels[k], ref[k], None if cur is None else cur[k]) for k in shown]
    if pooled:
        bars.append(_bar(f"{len(pooled)} more levels", ref[pooled].sum(), None if cur is None else cur[pooled].sum()))
    if show_unlisted:
        bars.append(unlisted)
    return Chart(LEVELS, tuple(bars))


def chart(profile, summary=None) -> Chart:
    """The chart of a profile (and, when given, a summary of current values in its bins). A current
    side without a value present (all missing, or none of the reference's type) is not drawn."""
    note = ""
    if summary is not None and summary.n == 0:
        summary, note = None, f"No current value to draw ({summary.missing} missing or not of the reference's type)."
    numeric = isinstance(profile, NumericProfile)
    drawn = numeric_chart(profile, summary) if numeric else categorical_chart(profile, summary)
    return dataclasses.replace(drawn, note=" ".join(filter(None, (drawn.note, note))))

