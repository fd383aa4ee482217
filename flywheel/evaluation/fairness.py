"""Fairness of a model across slices of its test rows: per-slice metrics with bootstrap intervals,
and a gate with a known false-alarm rate that the blessing applies to them.

Pure functions: a frame, labels and model outputs in, plain dataclasses out (TFMA's per-slice
thresholds in TFX's Evaluator are the model). What is sliced and judged comes from the `evaluate`
section of params.yaml (flywheel/params.py EvaluateParams):

- a slice is a value of one feature, or a pair of values of two crossed features ("a:b", only
  when named in `slice_crosses`);
  numeric features with more distinct values than `slice_bins` are cut into quantile bins; the
  most frequent `max_slices` slices of a grouping are kept and the rest pooled, so a feature with
  thousands of values costs no more than one with twenty;
- each slice has its row count, the task's primary metric (flywheel/evaluation/evaluation_metrics.py) and a
  percentile bootstrap interval; a slice under `min_slice_rows` rows is reported as too small,
  and one whose metric is undefined (AUC on one class) as undefined; neither is judged;
- the gate (`judge`): each judged slice is compared with the other judged slices of its
  grouping (their row-weighted mean; the primary metric and, for binary classifiers, the true-
  and false-positive rates and selection rate), with the floor `min_slice_auc` / `min_slice_accuracy` / `max_slice_rmse`,
  and with the production model on the same rows (paired resamples). Each comparison is a
  one-sided z-test of "no worse" from bootstrap standard errors; Holm's correction over every
  comparison that gates (`slice_gates`, the floor, production) keeps the chance of refusing a
  model that is fair by construction at most 1 - `confidence`, however many slices there are.
  A comparison refuses when it is significant after the correction and worse by more than
  allowed (`max_slice_gap`, `max_rate_gap`, `min_selection_ratio`, `slice_allowed_regression`).

The bootstrap costs resamples x rows per slice: slices above `bootstrap_max_rows` rows are
bootstrapped on a random subsample of that many rows and the interval's width is scaled by
sqrt(subsample / rows) (the m-out-of-n bootstrap), so the cost is bounded whatever the test
split's size. Every random draw comes from `bootstrap_seed` and the slice's name, so a slice's
interval does not depend on which other slices were asked for.
"""
from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import pandas as pd

from flywheel import names
from flywheel.drift.pvalues import holm
from flywheel.evaluation import evaluation_metrics as em
from flywheel.evaluation import slice_candidates
from flywheel.params import EvaluateParams

OK, TOO_SMALL, UNDEFINED = "ok", "too small", "undefined"
GAP, FLOOR, PRODUCTION = "gap", "floor", "production"
MISSING = "(missing)"
OTHER = "(other)"
CROSS = ":"     # "payment_type:trip_miles" in params crosses two features


@dataclasses.dataclass
class SliceResult:
    grouping: str                  # the feature, or "a:b" for a crossed pair
    slice: str                     # the value, bin or pair of values ("Cash", "(0.5, 1.2]", "Cash & (0.5, 1.2]")
    rows: int
    status: str                    # ok | too small | undefined
    value: float | None = None     # the candidate's primary metric on the slice
    low: float | None = None       # its bootstrap interval
    high: float | None = None
    production: float | None = None          # the production model's metric on the same rows
    production_low: float | None = None
    production_high: float | None = None
    worse_by: float | None = None            # candidate worse than production by (metric units; < 0 = better)
    worse_by_low: float | None = None        # paired bootstrap interval of worse_by
    worse_by_high: float | None = None
    se: float | None = None                  # bootstrap standard error of value
    worse_by_se: float | None = None         # ... and of worse_by (paired)


@dataclasses.dataclass
class Comparison:
    """One hypothesis the gate tests: the slice is worse than a reference (the other slices of
    its grouping, the floor, or production on the same rows) by more than `allowed`. `p_value`
    is one-sided against "no worse" (z from the bootstrap standard errors); `adjusted` is Holm's
    over every comparison that gates."""
    criterion: str                 # gap | floor | production
    measure: str                   # primary | tpr | fpr | selection_rate
    grouping: str
    slice: str
    value: float                   # the slice's measure
    reference: float               # the other slices', the floor, or production's
    worse_by: float                # in the measure's units (selection_rate: log of others / slice)
    low: float                     # confidence interval of worse_by
    high: float
    allowed: float
    p_value: float
    gates: bool                    # counted in the family and able to refuse (params evaluate.slice_gates)
    adjusted: float | None = None


@dataclasses.dataclass
class Failure:
    criterion: str                 # gap | floor | production
    grouping: str
    slice: str
    message: str                   # names the criterion, slice, values and intervals
    values: dict                   # the figures the message quotes


@dataclasses.dataclass
class Gap:
    grouping: str
    largest: float                 # of the primary metric, between any two judged slices
    worst: float = 0.0             # the largest by which a slice is worse than the other slices
    worst_slice: str | None = None
    worst_adjusted: float | None = None       # its Holm-adjusted p-value


@dataclasses.dataclass
class FairnessReport:
    metric: str
    confidence: float
    slices: list[SliceResult]
    gaps: list[Gap]
    failures: list[Failure]
    absent: list[str]              # slice features named in params but not in the data
    comparisons: list[Comparison] = dataclasses.field(default_factory=list)
    candidates: list[dict] = dataclasses.field(default_factory=list)   # proposed slice columns when none exist

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line for the run summary and the blessing."""
        judged = sum(1 for s in self.slices if s.status == OK)
        small = sum(1 for s in self.slices if s.status == TOO_SMALL)
        groupings = len({s.grouping for s in self.slices})
        if not self.slices:
            absent = f" (not in the data: {', '.join(self.absent)})" if self.absent else ""
            proposed = ""
            if self.candidates:
                proposed = (f"; candidate slice columns: {', '.join(c['column'] for c in self.candidates)} "
                            f"(SET='{slice_candidates.setting(self.candidates)}')")
            return "no slices" + absent + proposed
        family = sum(1 for c in self.comparisons if c.gates)
        counts = (f"{judged} slices judged, {small} too small, over {groupings} groupings; {family} comparisons, "
                  f"Holm at {1 - self.confidence:.0%} family-wise")
        if self.failures:
            first = self.failures[0]
            more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            return f"FAILED: {first.message}{more}; {counts}"
        widest = max(self.gaps, key=lambda g: g.worst, default=None)
        gap = ""
        if widest and widest.worst_slice is not None:
            gap = (f"; worst slice {widest.grouping}={widest.worst_slice}, {self.metric} worse than the other slices by "
                   f"{widest.worst:.3f} (adjusted p {widest.worst_adjusted:.2f})")
        return f"passed: {counts}{gap}"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "summary": self.summary(), **dataclasses.asdict(self)}


# --- slices ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Sliced:
    """Each row's slice of one grouping as a code into `names` (codes, not strings, so a million
    rows cost an integer array)."""
    codes: np.ndarray
    names: list[str]


def _pooled(codes: np.ndarray, names_: list[str], max_slices: int) -> Sliced:
    """Beyond the `max_slices` most frequent slices, the rest pooled as "(other)"."""
    counts = np.bincount(codes, minlength=len(names_))
    if len(names_) <= max_slices:
        return Sliced(codes, names_)
    kept = np.argsort(-counts, kind="stable")[:max(max_slices - 1, 1)]
    remap = np.full(len(names_), len(kept))
    remap[kept] = np.arange(len(kept))
    return Sliced(remap[codes], [names_[k] for k in kept] + [OTHER])


def slice_codes(frame: pd.DataFrame, feature: str, bins: int, max_slices: int) -> Sliced:
    """Each row's slice of one feature: the value, or its quantile bin when the feature is numeric
    with more than `bins` distinct values; missing values are their own slice "(missing)"."""
    column = frame[feature]
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if numeric:
        column = column.replace([np.inf, -np.inf], np.nan)    # an infinite value is not a bin edge
    if numeric and column.nunique() > bins:
        binned = pd.qcut(column, bins, duplicates="drop")
        codes, names_ = binned.cat.codes.to_numpy().astype(np.int64), [str(c) for c in binned.cat.categories]
    else:
        codes, uniques = pd.factorize(column, sort=True)
        names_ = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names_), codes)
        names_ = names_ + [MISSING]
    return _pooled(codes, names_, max_slices)


def slice_labels(frame: pd.DataFrame, feature: str, bins: int, max_slices: int) -> pd.Series:
    """Each row's slice of one feature as a string (slice_codes, readable)."""
    sliced = slice_codes(frame, feature, bins, max_slices)
    return pd.Series(np.asarray(sliced.names, dtype=object)[sliced.codes], index=frame.index)


def groupings(frame: pd.DataFrame, params: EvaluateParams) -> tuple[dict[str, Sliced], list[str]]:
    """({grouping name: each row's slice}, features named in params that the data lacks)."""
    absent, result = [], {}
    for name, crossed_pair in [(f, False) for f in params.slice_features] + [(c, True) for c in params.slice_crosses]:
        parts = [p.strip() for p in name.split(CROSS)] if crossed_pair else [name]
        if crossed_pair and (len(parts) != 2 or not all(parts)):
            raise ValueError(f"params: evaluate.slice_crosses entry '{name}' must name two features as 'a{CROSS}b'")
        missing = [p for p in parts if p not in frame]
        if missing:
            absent += [m for m in missing if m not in absent]
            continue
        if len(parts) == 1:
            result[parts[0]] = slice_codes(frame, parts[0], params.slice_bins, params.max_slices)
        else:
            a, b = (slice_codes(frame, p, params.slice_bins, params.max_slices) for p in parts)
            codes, pairs = pd.factorize(a.codes * len(b.names) + b.codes, sort=True)
            names_ = [f"{a.names[k // len(b.names)]} & {b.names[k % len(b.names)]}" for k in pairs]
            result[CROSS.join(parts)] = _pooled(codes, names_, params.max_slices)
    return result, absent


# --- metrics over resamples -----------------------------------------------------------------------

def _resampled_auc(labels: np.ndarray, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """AUC of each row of `index` (resamples x draws, row positions): the Mann-Whitney statistic
    with ties counted half. Rows are sorted once; each resample is a count per distinct score and
    class (one bincount), so the cost is O(resamples x draws) whatever the resample."""
    distinct, group = np.unique(scores, return_inverse=True)
    resamples, groups = index.shape[0], len(distinct)
    key = ((np.arange(resamples)[:, None] * groups + group[index]) * 2 + (labels[index] == 1)).ravel()
    counts = np.bincount(key, minlength=resamples * groups * 2).reshape(resamples, groups, 2)
    negatives, positives = counts[..., 0].astype(float), counts[..., 1].astype(float)
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (positives * (negatives_below + 0.5 * negatives)).sum(axis=1) / pairs, np.nan)


def resampled_metric(metric: str, labels: np.ndarray, outputs: dict, index: np.ndarray) -> np.ndarray:
    """The primary metric of each row of `index` (resamples x draws, row positions into labels and
    outputs). `np.arange(n)[None, :]` is the metric on the rows themselves."""
    if metric == "auc":
        return _resampled_auc(labels, outputs[names.OUTPUT_SCORE], index)
    if metric == "accuracy":
        if names.OUTPUT_PROBABILITIES in outputs:
            right = outputs[names.OUTPUT_PROBABILITIES].argmax(axis=1) == labels
        else:
            right = (outputs[names.OUTPUT_SCORE] >= 0.5) == (labels == 1)
        return right[index].mean(axis=1)
    error = outputs[names.OUTPUT_SCORE] - labels
    if metric == "rmse":
        return np.sqrt((error ** 2)[index].mean(axis=1))
    if metric == "mae":
        return np.abs(error)[index].mean(axis=1)
    raise ValueError(f"no resampled form of metric '{metric}'")


@dataclasses.dataclass
class _Draws:
    """Bootstrap draws of one slice: `rows` are the slice's rows it resamples (all, or a capped
    subsample), `index` the resamples (positions into `rows`), `scale` shrinks interval widths
    back to the slice's size."""
    rows: np.ndarray
    index: np.ndarray
    scale: float


def _draws(size: int, params: EvaluateParams, key: str, cap: int | None = None) -> _Draws:
    rng = np.random.default_rng([params.bootstrap_seed, zlib.crc32(key.encode())])
    rows = np.arange(size)
    cap = min(cap or params.bootstrap_max_rows, params.bootstrap_max_rows)
    if size > cap:
        rows = np.sort(rng.choice(size, cap, replace=False))
    m = len(rows)
    index = rng.integers(0, m, size=(params.bootstrap_resamples, m), dtype=np.int32 if m < 2 ** 31 else np.int64)
    return _Draws(rows, index, math.sqrt(m / size))


def _interval(point: float, draws: np.ndarray, sub_point: float, scale: float,
              confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval of the draws, widths scaled around the point (scale 1: plain percentiles)."""
    finite = draws[np.isfinite(draws)]
    # Too many undefined resamples (e.g. AUC on a slice with two positives): no interval.
    if not np.isfinite(point) or len(finite) < 0.9 * len(draws) or not len(finite):
        return None, None
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(finite, [tail, 1 - tail])
    return float(point + scale * (lo - sub_point)), float(point + scale * (hi - sub_point))


def _se(draws: np.ndarray, scale: float) -> float | None:
    """Bootstrap standard error, scaled back to the slice's size; None when too many draws are undefined."""
    finite = draws[np.isfinite(draws)]
    return float(np.std(finite, ddof=1) * scale) if len(finite) >= max(0.9 * len(draws), 2) else None


def _subset(outputs: dict, index: np.ndarray) -> dict:
    return {k: v[index] for k, v in outputs.items()}


def _point(metric: str, labels: np.ndarray, outputs: dict) -> float:
    return float(resampled_metric(metric, labels, outputs, np.arange(len(labels))[None, :])[0])


def measure_slice(grouping: str, name: str, metric: str, labels: np.ndarray, outputs: dict,
                  params: EvaluateParams, production: tuple[np.ndarray, dict] | None = None) -> SliceResult:
    """One slice's metric and interval (and production's, and the paired difference)."""
    rows = len(labels)
    if rows < params.min_slice_rows:
        return SliceResult(grouping, name, rows, TOO_SMALL)
    point = _point(metric, labels, outputs)
    if not np.isfinite(point):
        return SliceResult(grouping, name, rows, UNDEFINED)
    draws = _draws(rows, params, f"{grouping}\x00{name}")
    sub_labels, sub_outputs = labels[draws.rows], _subset(outputs, draws.rows)
    sub_point = point if draws.scale == 1 else _point(metric, sub_labels, sub_outputs)
    candidate = resampled_metric(metric, sub_labels, sub_outputs, draws.index)
    low, high = _interval(point, candidate, sub_point, draws.scale, params.confidence)
    result = SliceResult(grouping, name, rows, OK if low is not None else UNDEFINED, point, low, high,
                         se=_se(candidate, draws.scale))
    if production is not None:
        p_labels, p_outputs = production
        p_point = _point(metric, p_labels, p_outputs)
        p_sub_labels, p_sub_outputs = p_labels[draws.rows], _subset(p_outputs, draws.rows)
        p_sub_point = p_point if draws.scale == 1 else _point(metric, p_sub_labels, p_sub_outputs)
        p_draws = resampled_metric(metric, p_sub_labels, p_sub_outputs, draws.index)   # the same resamples
        result.production = p_point if np.isfinite(p_point) else None
        result.production_low, result.production_high = _interval(p_point, p_draws, p_sub_point, draws.scale,
                                                                  params.confidence)
        if result.production is not None:
            result.worse_by = em.worse_by(metric, point, p_point)
            worse_draws = em.worse_by(metric, candidate, p_draws)
            result.worse_by_low, result.worse_by_high = _interval(
                result.worse_by, worse_draws, em.worse_by(metric, sub_point, p_sub_point), draws.scale,
                params.confidence)
            result.worse_by_se = _se(worse_draws, draws.scale)
    return result


# --- comparisons and the gate --------------------------------------------------------------------
# Every criterion is a one-sided test of "the slice is no worse than its reference", with a
# z-statistic from bootstrap standard errors; Holm's step-down over all comparisons that gate
# keeps the chance that a model fair by construction is refused at most 1 - confidence
# (benchmarks/bench_fairness.py measures it). A comparison refuses only when its adjusted p-value
# is within that and the difference is also larger than allowed: significant and material.

PRIMARY, TPR, FPR, SELECTION = "primary", "tpr", "fpr", "selection_rate"
RATES = (TPR, FPR, SELECTION)       # of binary classifiers at the 0.5 threshold, as the confusion matrix
THRESHOLD = 0.5


def _p_worse(worse_by: float, se: float | None) -> float:
    """One-sided p-value of a difference this large (or larger) if the slice were no worse."""
    if se is None or not np.isfinite(worse_by):
        return 1.0
    if se <= 0:
        return 0.0 if worse_by > 0 else 1.0
    return 0.5 * math.erfc(worse_by / se / math.sqrt(2))


def _z(confidence: float) -> float:
    """Two-sided normal quantile of the confidence (bisection on erfc: no scipy here)."""
    low, high = 0.0, 10.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if math.erfc(mid / math.sqrt(2)) > 1 - confidence else (low, mid)
    return (low + high) / 2


def rate_draws(measure: str, labels: np.ndarray, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """True-positive rate, false-positive rate or selection rate of each resample (rows of index)."""
    selected = (scores >= THRESHOLD)[index]
    if measure == SELECTION:
        return selected.mean(axis=1)
    wanted = (labels == (1 if measure == TPR else 0))[index]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wanted.sum(axis=1) > 0, (selected & wanted).sum(axis=1) / wanted.sum(axis=1), np.nan)


def _measure_draws(measure: str, metric: str, labels: np.ndarray, outputs: dict,
                   draws: _Draws) -> tuple[float, np.ndarray]:
    """(point, bootstrap draws) of a measure on some rows; `draws` resample them (shared by the measures)."""
    everything = np.arange(len(labels))[None, :]
    sub_labels, sub_outputs = labels[draws.rows], _subset(outputs, draws.rows)
    if measure == PRIMARY:
        point = _point(metric, labels, outputs)
        values = resampled_metric(metric, sub_labels, sub_outputs, draws.index)
    else:
        point = float(rate_draws(measure, labels, outputs[names.OUTPUT_SCORE], everything)[0])
        values = rate_draws(measure, sub_labels, sub_outputs[names.OUTPUT_SCORE], draws.index)
    return point, values


def _worse(measure: str, metric: str, value, reference):
    """How much worse the slice's measure is than the reference's (arrays or floats)."""
    if measure == PRIMARY:
        return em.worse_by(metric, value, reference)
    if measure == TPR:
        return reference - value                       # equal opportunity: fewer positives found
    if measure == FPR:
        return value - reference                       # equalized odds: more negatives flagged
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(reference) - np.log(value)       # selected less often, as a log ratio


def allowed(measure: str, params: EvaluateParams) -> float:
    if measure == PRIMARY:
        return params.max_slice_gap
    if measure == SELECTION:
        return -math.log(params.min_selection_ratio) if params.min_selection_ratio > 0 else math.inf
    return params.max_rate_gap


def measures(task: str) -> tuple[str, ...]:
    return (PRIMARY, *RATES) if task == names.BINARY else (PRIMARY,)


def slice_measures(grouping: str, name: str, task: str, labels: np.ndarray, outputs: dict,
                   params: EvaluateParams) -> dict[str, tuple[float, float]]:
    """{measure: (value, bootstrap standard error)} of one slice's rows, every measure of the task
    from one set of resamples."""
    metric, found = em.primary_metric(task), {}
    draws = _draws(len(labels), params, f"{grouping}\x00{name}\x00measures")
    for measure in measures(task):
        value, values = _measure_draws(measure, metric, labels, outputs, draws)
        se = _se(values, draws.scale)
        if np.isfinite(value) and se is not None:
            found[measure] = (value, se)
    return found


def versus_others(grouping: str, members: list[tuple[SliceResult, dict]], task: str,
                  params: EvaluateParams) -> list[Comparison]:
    """Each judged slice against the other judged slices of its grouping: their metrics averaged
    with the slices' rows as weights. Within-slice metrics against within-slice metrics: the AUC
    of pooled rows also ranks rows across slices with different base rates, so it is not a fair
    reference for a slice's own AUC."""
    metric, found, half = em.primary_metric(task), [], _z(params.confidence)
    for measure in measures(task):
        judged = [(s, m[measure]) for s, m in members if s.status == OK and measure in m]
        for s, (value, se) in judged:
            others = [(o.rows, v, e) for o, (v, e) in judged if o is not s]
            if not others:
                continue
            weights = np.array([rows for rows, _, _ in others], dtype=float)
            weights /= weights.sum()
            reference = float(np.dot(weights, [v for _, v, _ in others]))
            reference_se = float(np.sqrt(np.dot(weights ** 2, [e ** 2 for _, _, e in others])))
            worse = float(_worse(measure, metric, value, reference))
            if measure == SELECTION:    # the standard error of a log ratio: relative errors add
                difference_se = math.hypot(se / max(value, 1e-12), reference_se / max(reference, 1e-12))
            else:
                difference_se = math.hypot(se, reference_se)
            if not np.isfinite(worse):
                continue
            found.append(Comparison(GAP, measure, grouping, s.slice, value, reference, worse,
                                    worse - half * difference_se, worse + half * difference_se,
                                    allowed(measure, params), _p_worse(worse, difference_se),
                                    measure in params.slice_gates))
    return found


def _floor(metric: str, params: EvaluateParams) -> tuple[float, bool] | None:
    """(bound, is_lower_bound) of the per-slice floor for the metric, or None when off."""
    if metric == "auc":
        return (params.min_slice_auc, True) if params.min_slice_auc > 0 else None
    if metric == "accuracy":
        return (params.min_slice_accuracy, True) if params.min_slice_accuracy > 0 else None
    return (params.max_slice_rmse, False) if params.max_slice_rmse > 0 else None


def slice_comparisons(s: SliceResult, metric: str, params: EvaluateParams) -> list[Comparison]:
    """The floor (or ceiling) and the comparison with production on the same rows, of one judged slice."""
    found, half = [], _z(params.confidence)
    floor = _floor(metric, params)
    if floor and s.se is not None:
        worse = (floor[0] - s.value) if floor[1] else (s.value - floor[0])
        found.append(Comparison(FLOOR, PRIMARY, s.grouping, s.slice, s.value, floor[0], worse, worse - half * s.se,
                                worse + half * s.se, 0.0, _p_worse(worse, s.se), True))
    if s.worse_by is not None and s.worse_by_se is not None:
        found.append(Comparison(PRODUCTION, PRIMARY, s.grouping, s.slice, s.value, s.production, s.worse_by,
                                s.worse_by - half * s.worse_by_se, s.worse_by + half * s.worse_by_se,
                                params.slice_allowed_regression, _p_worse(s.worse_by, s.worse_by_se), True))
    return found


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval_text(s: SliceResult) -> str:
    return f"{_fmt(s.value)} [{_fmt(s.low)}, {_fmt(s.high)}] on {s.rows} rows"


def _measure_name(measure: str, metric: str) -> str:
    return {PRIMARY: metric, TPR: "true-positive rate", FPR: "false-positive rate",
            SELECTION: "selection rate"}[measure]


def _message(c: Comparison, s: SliceResult, metric: str, level: str) -> str:
    what = _measure_name(c.measure, metric)
    test = f"Holm-adjusted p {c.adjusted:.3g}"
    where = f"{c.grouping}={c.slice} ({s.rows} rows)"
    if c.criterion == GAP and c.measure == SELECTION:
        return (f"selection rate gap on {where}: {c.value:.3f} is {c.value / c.reference:.2f} of the other slices' "
                f"{c.reference:.3f}, below the allowed ratio {math.exp(-c.allowed):.2f} ({test})")
    if c.criterion == GAP:
        return (f"{what} gap on {where}: {c.value:.3f} vs the other slices' {c.reference:.3f}, worse by {c.worse_by:.3f} "
                f"({level} interval [{c.low:.3f}, {c.high:.3f}]), more than the allowed {c.allowed} ({test})")
    if c.criterion == FLOOR:
        side = "below the floor" if metric in ("auc", "accuracy") else "above the ceiling"
        return f"{what} on {c.grouping}={c.slice} is {_interval_text(s)}: {side} {c.reference} ({test})"
    return (f"{what} on {c.grouping}={c.slice} is {_interval_text(s)}, worse than production's "
            f"{_fmt(s.production)} [{_fmt(s.production_low)}, {_fmt(s.production_high)}] on the same rows "
            f"by {c.worse_by:.3f} ({level} interval of the difference [{_fmt(s.worse_by_low)}, "
            f"{_fmt(s.worse_by_high)}]), more than the allowed {c.allowed} ({test})")


def judge(slices: list[SliceResult], rest: list[Comparison], metric: str,
          params: EvaluateParams) -> tuple[list[Gap], list[Comparison], list[Failure]]:
    """Holm over every gating comparison; the failures (significant and larger than allowed),
    worst first; each grouping's spread and its slice most worse than the others."""
    judged = [s for s in slices if s.status == OK]
    comparisons = list(rest) + [c for s in judged for c in slice_comparisons(s, metric, params)]
    family = [c for c in comparisons if c.gates]
    for c, adjusted in zip(family, holm([c.p_value for c in family]) if family else []):
        c.adjusted = float(adjusted)
    alpha, level = 1 - params.confidence, f"{params.confidence:.0%}"
    by_name = {(s.grouping, s.slice): s for s in judged}
    failures = [Failure(c.criterion, c.grouping, c.slice, _message(c, by_name[(c.grouping, c.slice)], metric, level),
                        dataclasses.asdict(c))
                for c in sorted(family, key=lambda c: c.adjusted)
                if c.adjusted <= alpha and c.worse_by > c.allowed and (c.grouping, c.slice) in by_name]
    gaps = []
    for grouping in dict.fromkeys(s.grouping for s in slices):
        values = [s.value for s in judged if s.grouping == grouping]
        gap = Gap(grouping, float(max(values) - min(values)) if len(values) > 1 else 0.0)
        for c in rest:
            if c.grouping == grouping and c.measure == PRIMARY and c.worse_by > gap.worst:
                gap.worst, gap.worst_slice, gap.worst_adjusted = c.worse_by, c.slice, c.adjusted
        gaps.append(gap)
    return gaps, comparisons, failures


def check(params: EvaluateParams) -> None:
    """Settings the bootstrap cannot work with are errors that name the key."""
    problems = []
    if not 0 < params.confidence < 1:
        problems.append(f"evaluate.confidence must be between 0 and 1, not {params.confidence}")
    for key in ("bootstrap_resamples", "bootstrap_max_rows", "slice_bins", "max_slices"):
        if getattr(params, key) < 1:
            problems.append(f"evaluate.{key} must be at least 1, not {getattr(params, key)}")
    if params.bootstrap_resamples < 2:
        problems.append("evaluate.bootstrap_resamples must be at least 2 (a standard error needs two draws)")
    unknown = [g for g in params.slice_gates if g not in (PRIMARY, *RATES)]
    if unknown:
        problems.append(f"evaluate.slice_gates: unknown {unknown}; choose among {[PRIMARY, *RATES]}")
    if problems:
        raise ValueError("params: " + "; ".join(problems))


def assess(frame: pd.DataFrame, task: str, labels: np.ndarray, outputs: dict, params: EvaluateParams,
           production: tuple[np.ndarray, dict] | None = None, label: str = "") -> FairnessReport:
    """Slice the test rows as params name, measure every slice (candidate, and production's
    (labels, outputs) on the same rows when given), compare each with the other slices, and judge. When
    none of the named slices exist, the report proposes columns (never `label`)."""
    check(params)
    metric = em.primary_metric(task)
    frame = frame.reset_index(drop=True)
    sliced, absent = groupings(frame, params)
    labels = np.asarray(labels)
    results, rest = [], []
    for grouping, slice_of_row in sliced.items():
        order = np.argsort(slice_of_row.codes, kind="stable")
        bounds = np.searchsorted(slice_of_row.codes[order], np.arange(len(slice_of_row.names) + 1))
        members = []
        for code in sorted(range(len(slice_of_row.names)), key=lambda c: slice_of_row.names[c]):
            index, name = order[bounds[code]:bounds[code + 1]], slice_of_row.names[code]
            if not len(index):
                continue
            paired = (production[0][index], _subset(production[1], index)) if production is not None else None
            result = measure_slice(grouping, str(name), metric, labels[index], _subset(outputs, index), params, paired)
            results.append(result)
            if result.status == OK:
                members.append((result, slice_measures(grouping, str(name), task, labels[index],
                                                       _subset(outputs, index), params)))
        rest += versus_others(grouping, members, task, params)
    gaps, comparisons, failures = judge(results, rest, metric, params)
    candidates = [] if sliced else slice_candidates.propose(frame, (label,), params.max_slices, params.min_slice_rows)
    return FairnessReport(metric, params.confidence, results, gaps, failures, absent, comparisons, candidates)
