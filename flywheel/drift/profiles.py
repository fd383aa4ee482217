"""Reference profiles of features, and summaries of current values counted in the reference's bins.

A profile describes the reference sample (the production model's training split, or the train
split when checking train/eval skew); a summary describes the current sample in the profile's
terms. Summaries only hold counts and non-negative sums, so they are computed incrementally and
merged by addition (`a + b`): Prometheus can sum them across pods as counters.

Numeric features. The reference is a quantile histogram with Q buckets, as TFDV computes it with
`tfdv.StatsOptions(num_quantiles_histogram_buckets=Q)`. Its distinct boundaries cut the line into
bins, and every bin keeps the reference's count:
- a value the reference holds at least twice and that fills a whole quantile bucket or more
  (a repeated boundary: the zeros of a zero-inflated feature, the levels of a count) is a point
  mass with a bin of its own, so a change of its share is seen exactly;
- values below the reference minimum and above its maximum have a bin each (empty in the
  reference), with the summed distance beyond the range, which gives the exact Wasserstein
  contribution of out-of-range values.
Bins are closed on the right, (e[i-1], e[i]]: a point mass v is the bin (nextafter(v, -inf), v].

Categorical features (string features, and integer features the schema marks categorical: TFDV
gives both string statistics) are value counts, plus one slot for reference values TFDV did not
list (beyond its rank histogram) and, in summaries, values the reference never held.
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Mapping

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# A value is a point mass when it fills a quantile bucket (a repeated boundary) and the reference
# holds it at least this many times: in a sample smaller than Q every value repeats a boundary, and
# a value seen 2-4 times in a small sample is mostly luck, which the point-mass test would then
# take for a change when the current sample holds it less often.
MIN_ATOM_COUNT = 5.0
# TFDV's num_rank_histogram_buckets default: more levels than this are folded into `other`.
DEFAULT_MAX_LEVELS = 1000


def _as_float(values: Any) -> np.ndarray:
    """Values as float64; anything that is not a number (None, "", "abc") becomes NaN."""
    try:
        return np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        pass

    def one(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan
    return np.fromiter((one(v) for v in np.asarray(values, dtype=object).reshape(-1)), float)


def _key(v) -> str | None:
    """One value as the string TFDV uses for categorical statistics; None when it is missing."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return None
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode("utf-8", "replace")
    if isinstance(v, (bool, np.bool_, int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def category_counts(values: Any) -> tuple[dict[str, int], int]:
    """Value -> count with values as TFDV's categorical statistics name them (integers as decimal
    text, also when they arrive as floats such as 3.0 from a column with missing values), and the
    number of missing values (None, NaN). Counts distinct values first, so a long column costs one
    pass in C and one Python step per distinct value."""
    array = np.asarray(values)
    if array.dtype.kind == "O":
        raw = collections.Counter(array.reshape(-1).tolist())
    else:
        array = array.reshape(-1)
        if array.dtype.kind == "f":
            array = array[~np.isnan(array)]
        unique, count = np.unique(array, return_counts=True)
        raw = dict(zip(unique.tolist(), count.tolist()))
    counts: dict[str, int] = {}
    missing = int(np.asarray(values).size - sum(raw.values()))
    for value, count in raw.items():
        key = _key(value)
        if key is None:
            missing += count
        else:
            counts[key] = counts.get(key, 0) + count
    return counts, missing


# --- numeric ---------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class NumericSummary:
    """Current values of one numeric feature in the reference's bins. Add two to merge them."""
    counts: np.ndarray          # int64, one per bin of the profile
    missing: int = 0            # NaN, +-inf, None, not a number
    below: float = 0.0          # sum of (reference minimum - x) over values below the minimum
    above: float = 0.0          # sum of (x - reference maximum) over values above the maximum

    kind = NUMERIC

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def __add__(self, other: "NumericSummary") -> "NumericSummary":
        if not isinstance(other, NumericSummary) or other.counts.shape != self.counts.shape:
            raise ValueError("only summaries made with the same profile can be added")
        return NumericSummary(self.counts + other.counts, self.missing + other.missing,
                              self.below + other.below, self.above + other.above)

    def to_dict(self) -> dict:
        return {"kind": NUMERIC, "counts": [int(c) for c in self.counts], "missing": int(self.missing),
                "below": float(self.below), "above": float(self.above)}


@dataclasses.dataclass(eq=False)
class NumericProfile:
    """A numeric reference: bins cut at `edges` (bin i is (edges[i-1], edges[i]], the first and the
    last open-ended), the reference's count in each bin, which bins are point masses, and the
    reference's moments."""
    edges: np.ndarray           # float64, strictly increasing, L values -> L + 1 bins
    counts: np.ndarray          # float64, reference count per bin; the two outer bins hold 0
    atoms: np.ndarray           # bool per bin: the bin is one value holding a point mass
    minimum: float
    maximum: float
    mean: float
    sd: float
    missing: float = 0.0
    quantiles: int = 0          # Q of the quantile histogram the profile was read from

    kind = NUMERIC

    @property
    def n(self) -> float:
        return float(self.counts.sum())

    @property
    def n_bins(self) -> int:
        return int(self.counts.size)

    def empty(self) -> NumericSummary:
        return NumericSummary(np.zeros(self.n_bins, np.int64))

    def summarize(self, values: Any) -> NumericSummary:
        """Count `values` into this profile's bins (non-finite values count as missing)."""
        x = _as_float(values)
        finite = np.isfinite(x)
        x = x[finite]
        counts = np.bincount(np.searchsorted(self.edges, x, side="left"), minlength=self.n_bins).astype(np.int64)
        if self.edges.size:
            below = float(np.sum(self.minimum - x[x < self.minimum]))
            above = float(np.sum(x[x > self.maximum] - self.maximum))
        else:
            below = above = 0.0
        return NumericSummary(counts, int((~finite).sum()), below, above)

    def summary(self, counts, missing: int = 0, below: float = 0.0, above: float = 0.0) -> NumericSummary:
        """A summary rebuilt from exported counters (e.g. sums over pods read back from Prometheus)."""
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if counts.size != self.n_bins or (counts < 0).any() or missing < 0 or below < 0 or above < 0:
            raise ValueError(f"a summary of this profile has {self.n_bins} non-negative counts and "
                             f"non-negative sums; got {counts.size} counts")
        return NumericSummary(counts, int(missing), float(below), float(above))

    def from_dict(self, data: Mapping) -> NumericSummary:
        return self.summary(data["counts"], data.get("missing", 0), data.get("below", 0.0), data.get("above", 0.0))

    def to_dict(self) -> dict:
        """JSON-ready; `profile_from_dict` reads it back exactly (floats keep every bit)."""
        return {"kind": NUMERIC, "edges": [float(e) for e in self.edges], "counts": [float(c) for c in self.counts],
                "atoms": [bool(a) for a in self.atoms], "minimum": _finite_or_none(self.minimum),
                "maximum": _finite_or_none(self.maximum), "mean": _finite_or_none(self.mean),
                "sd": _finite_or_none(self.sd), "missing": float(self.missing), "quantiles": int(self.quantiles)}

    def cdf(self, x: Any) -> np.ndarray:
        """The reference CDF, linear inside a bin and jumping at point masses."""
        x = _as_float(x)
        n = self.n
        if n <= 0:
            return np.full(x.shape, math.nan)
        cum = np.concatenate([[0.0], np.cumsum(self.counts) / n])
        i = np.searchsorted(self.edges, x, side="left")
        out = np.where(i >= self.edges.size, 1.0, 0.0)
        inner = (i > 0) & (i < self.edges.size)
        j = i[inner]
        lo, hi = self.edges[j - 1], self.edges[j]
        f_lo, f_hi = cum[j], cum[j + 1]
        frac = np.where(self.atoms[j] | (hi <= lo), 1.0, (x[inner] - lo) / np.where(hi > lo, hi - lo, 1.0))
        out[inner] = f_lo + (f_hi - f_lo) * np.clip(frac, 0.0, 1.0)
        return out


def _numeric_profile(bounds: np.ndarray, cum: np.ndarray, atom_mass: np.ndarray, mean: float, sd: float,
                     missing: float, quantiles: int) -> NumericProfile:
    """Bins from the distinct quantile boundaries `bounds`, the reference count at or below each
    (`cum`) and the point mass at each (0 where there is none)."""
    if bounds.size == 0:
        return NumericProfile(np.empty(0), np.zeros(1), np.zeros(1, bool), math.nan, math.nan,
                              mean, sd, missing, quantiles)
    edges = [float(np.nextafter(bounds[0], -np.inf)), float(bounds[0])]
    counts = [0.0, float(cum[0])]
    atoms = [False, bool(atom_mass[0] > 0)]
    for j in range(1, bounds.size):
        value, segment, mass = float(bounds[j]), float(cum[j] - cum[j - 1]), float(atom_mass[j])
        below_value = float(np.nextafter(value, -np.inf))
        if mass > 0 and below_value > edges[-1]:
            edges += [below_value, value]
            counts += [max(segment - mass, 0.0), min(mass, segment)]
            atoms += [False, True]
        else:
            edges.append(value)
            counts.append(segment)
            atoms.append(mass > 0)
    counts.append(0.0)
    atoms.append(False)
    return NumericProfile(np.asarray(edges), np.maximum(np.asarray(counts), 0.0), np.asarray(atoms),
                          float(bounds[0]), float(bounds[-1]), mean, sd, missing, quantiles)


def numeric_profile(values: Any, quantiles: int) -> NumericProfile:
    """The exact profile of raw values: exact quantile boundaries and exact counts."""
    if quantiles < 1:
        raise ValueError(f"quantiles must be >= 1, got {quantiles}")
    x = _as_float(values)
    finite = np.isfinite(x)
    missing = float((~finite).sum())
    x = np.sort(x[finite])
    n = x.size
    if n == 0:
        return _numeric_profile(np.empty(0), np.empty(0), np.empty(0), math.nan, math.nan, missing, quantiles)
    ranks = np.clip(np.ceil(np.arange(quantiles + 1) * n / quantiles).astype(np.int64) - 1, 0, n - 1)
    bounds, repeats = np.unique(x[ranks], return_counts=True)
    cum = np.searchsorted(x, bounds, side="right").astype(float)
    at_value = cum - np.searchsorted(x, bounds, side="left")
    atom_mass = np.where((repeats >= 2) & (at_value >= MIN_ATOM_COUNT), at_value, 0.0)
    return _numeric_profile(bounds, cum, atom_mass, float(x.mean()), float(x.std()), missing, quantiles)


def numeric_profile_from_histogram(buckets, mean: float, sd: float, missing: float = 0.0,
                                   num_zeros: float | None = None, integer: bool = False) -> NumericProfile:
    """The profile read from a TFDV QUANTILES histogram: `buckets` are (low, high, count).

    TFDV's bucket holds (low, high]; a run of zero-width buckets (v, v) is a point mass at v, but
    TFDV spreads the count of everything in (previous boundary, v] evenly over the buckets ending
    at v, so the point mass is corrected where more is known: for an integer feature nothing lies
    strictly between v - 1 and v, and `num_zeros` is the exact count of zeros."""
    b = np.asarray(buckets, dtype=float).reshape(-1, 3)
    low, high, weight = b[:, 0], b[:, 1], b[:, 2]
    keep = np.isfinite(low) & np.isfinite(high)
    low, high, weight = low[keep], high[keep], weight[keep]
    if weight.sum() <= 0:
        return _numeric_profile(np.empty(0), np.empty(0), np.empty(0), mean, sd, missing, int(b.shape[0]))
    bounds = np.unique(np.concatenate([low, high]))
    cum = np.cumsum(np.bincount(np.searchsorted(bounds, high), weights=weight, minlength=bounds.size))
    point = low == high
    zero_width = np.bincount(np.searchsorted(bounds, high[point]), weights=weight[point], minlength=bounds.size)
    segment = np.diff(np.concatenate([[0.0], cum]))
    atom_mass = zero_width.copy()
    if integer:
        gap = np.diff(np.concatenate([[-np.inf], bounds]))
        whole = (zero_width > 0) & (gap <= 1.0)
        atom_mass[whole] = segment[whole]
    if num_zeros is not None:
        zero = np.searchsorted(bounds, 0.0)
        if zero < bounds.size and bounds[zero] == 0.0 and zero_width[zero] > 0:
            atom_mass[zero] = min(float(num_zeros), segment[zero])
    atom_mass = np.where(atom_mass >= MIN_ATOM_COUNT, atom_mass, 0.0)
    return _numeric_profile(bounds, cum, atom_mass, mean, sd, missing, int(b.shape[0]))


# --- categorical -----------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class CategoricalSummary:
    """Current values of one categorical feature: a count per reference level, then one count of
    values the reference did not list. Add two to merge them."""
    counts: np.ndarray          # int64, len(levels) + 1
    missing: int = 0

    kind = CATEGORICAL

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def __add__(self, other: "CategoricalSummary") -> "CategoricalSummary":
        if not isinstance(other, CategoricalSummary) or other.counts.shape != self.counts.shape:
            raise ValueError("only summaries made with the same profile can be added")
        return CategoricalSummary(self.counts + other.counts, self.missing + other.missing)

    def to_dict(self) -> dict:
        return {"kind": CATEGORICAL, "counts": [int(c) for c in self.counts], "missing": int(self.missing)}


@dataclasses.dataclass(eq=False)
class CategoricalProfile:
    """A categorical reference: its levels, their counts, and (last) the count of reference values
    not listed (TFDV lists at most num_rank_histogram_buckets levels)."""
    levels: tuple[str, ...]
    counts: np.ndarray          # float64, len(levels) + 1
    missing: float = 0.0

    kind = CATEGORICAL

    def __post_init__(self):
        self._index = {level: i for i, level in enumerate(self.levels)}

    @property
    def n(self) -> float:
        return float(self.counts.sum())

    @property
    def n_bins(self) -> int:
        return len(self.levels) + 1

    def empty(self) -> CategoricalSummary:
        return CategoricalSummary(np.zeros(self.n_bins, np.int64))

    def summarize(self, values: Any) -> CategoricalSummary:
        found, missing = category_counts(values)
        counts = np.zeros(self.n_bins, np.int64)
        other = len(self.levels)
        for key, count in found.items():
            counts[self._index.get(key, other)] += count
        return CategoricalSummary(counts, missing)

    def summary(self, counts, missing: int = 0) -> CategoricalSummary:
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if counts.size != self.n_bins or (counts < 0).any() or missing < 0:
            raise ValueError(f"a summary of this profile has {self.n_bins} non-negative counts; got {counts.size}")
        return CategoricalSummary(counts, int(missing))

    def from_dict(self, data: Mapping) -> CategoricalSummary:
        return self.summary(data["counts"], data.get("missing", 0))

    def to_dict(self) -> dict:
        return {"kind": CATEGORICAL, "levels": list(self.levels), "counts": [float(c) for c in self.counts],
                "missing": float(self.missing)}


def categorical_profile(values: Any, max_levels: int = DEFAULT_MAX_LEVELS) -> CategoricalProfile:
    """The exact profile of raw values: the `max_levels` commonest levels, the rest as `other`."""
    found, missing = category_counts(values)
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    listed = ranked[:max_levels]
    other = float(sum(c for _, c in ranked[max_levels:]))
    return CategoricalProfile(tuple(k for k, _ in listed), np.asarray([float(c) for _, c in listed] + [other]),
                              float(missing))


def categorical_profile_from_counts(counts: Mapping[str, float], total: float | None = None,
                                    missing: float = 0.0) -> CategoricalProfile:
    """A profile from value -> count; `total` (all present values) beyond the listed counts is `other`."""
    levels = tuple(counts)
    listed = np.asarray([float(counts[k]) for k in levels])
    other = max(0.0, float(total) - listed.sum()) if total is not None else 0.0
    return CategoricalProfile(levels, np.append(listed, other), float(missing))


# --- profiles from values and from TFDV statistics -------------------------------------------
def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _float(x) -> float:
    return math.nan if x is None else float(x)


def profile_from_dict(data: Mapping) -> "NumericProfile | CategoricalProfile":
    """A profile written by `to_dict` (e.g. the profiles.json the statistics step writes)."""
    if data.get("kind") == CATEGORICAL:
        return CategoricalProfile(tuple(str(v) for v in data["levels"]), np.asarray(data["counts"], float),
                                  float(data.get("missing", 0.0)))
    if data.get("kind") != NUMERIC:
        raise ValueError(f"not a drift profile: kind {data.get('kind')!r}")
    counts = np.asarray(data["counts"], float)
    edges = np.asarray(data["edges"], float)
    atoms = np.asarray(data["atoms"], bool)
    if counts.size != edges.size + 1 or atoms.size != counts.size or (counts < 0).any():
        raise ValueError(f"a numeric profile has one count and one atom flag per bin (edges + 1); got "
                         f"{edges.size} edges, {counts.size} counts, {atoms.size} flags")
    return NumericProfile(edges, counts, atoms, _float(data.get("minimum")), _float(data.get("maximum")),
                          _float(data.get("mean")), _float(data.get("sd")), float(data.get("missing", 0.0)),
                          int(data.get("quantiles", 0)))


Profile = NumericProfile | CategoricalProfile
Summary = NumericSummary | CategoricalSummary


def is_categorical_values(values: Any) -> bool:
    """Strings (and booleans) are categorical; numbers are numeric."""
    array = np.asarray(values)
    return array.dtype.kind in "OSUb"


def profile_from_values(values: Any, quantiles: int, categorical: bool | None = None) -> Profile:
    """The exact profile of raw values; `categorical=None` decides by dtype."""
    if categorical is None:
        categorical = is_categorical_values(values)
    return categorical_profile(values) if categorical else numeric_profile(values, quantiles)


def profiles_from_values(columns: Mapping[str, Any], quantiles: int,
                         categorical: frozenset[str] | set[str] = frozenset()) -> dict[str, Profile]:
    """Exact profiles of several columns (name -> values); integer columns named in `categorical`
    are categorical, as the schema's int_domain.is_categorical makes them for TFDV."""
    return {name: profile_from_values(values, quantiles, True if name in categorical else None)
            for name, values in columns.items()}


def summarize(profiles: Mapping[str, Profile], columns: Mapping[str, Any]) -> dict[str, Summary]:
    """Each profiled column of `columns` counted in its profile's bins (absent columns are left out)."""
    return {name: profile.summarize(columns[name]) for name, profile in profiles.items() if name in columns}


def _quantiles_histogram(num_stats):
    from tensorflow_metadata.proto.v0 import statistics_pb2
    for histogram in num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.QUANTILES:
            return histogram
    return None


def profile_from_feature_stats(feature) -> Profile | None:
    """The profile of one tensorflow_metadata FeatureNameStatistics, or None when it holds neither
    string statistics nor a quantiles histogram. String statistics win: TFDV gives them to string
    features and to integer features the schema marks categorical."""
    from tensorflow_metadata.proto.v0 import statistics_pb2
    if feature.HasField("string_stats"):
        stats = feature.string_stats
        common = stats.common_stats
        if stats.rank_histogram.buckets:
            counts = {b.label: b.sample_count for b in stats.rank_histogram.buckets}
        else:
            counts = {v.value: v.frequency for v in stats.top_values}
        total = common.tot_num_values or common.num_non_missing
        return categorical_profile_from_counts(counts, total, float(common.num_missing))
    if feature.HasField("num_stats"):
        stats = feature.num_stats
        histogram = _quantiles_histogram(stats)
        if histogram is None:
            return None
        buckets = [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]
        missing = float(stats.common_stats.num_missing) + float(histogram.num_nan)
        return numeric_profile_from_histogram(buckets, float(stats.mean), float(stats.std_dev), missing,
                                              float(stats.num_zeros),
                                              integer=feature.type == statistics_pb2.FeatureNameStatistics.INT)
    return None


def profiles_from_statistics(statistics, features: Any = None) -> dict[str, Profile]:
    """Profiles of every feature of a TFDV DatasetFeatureStatisticsList (its first dataset) or
    DatasetFeatureStatistics; `features` limits them to those names."""
    dataset = statistics.datasets[0] if hasattr(statistics, "datasets") else statistics
    wanted = set(features) if features is not None else None
    out = {}
    for feature in dataset.features:
        name = ".".join(feature.path.step) if feature.path.step else feature.name
        if wanted is not None and name not in wanted:
            continue
        profile = profile_from_feature_stats(feature)
        if profile is not None:
            out[name] = profile
    return out
