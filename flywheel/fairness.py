"""Fairness of a model across slices of its test rows: per-slice metrics with bootstrap intervals,
and the criteria the blessing applies to them.

Pure functions: a frame, labels and model outputs in, plain dataclasses out (TFMA's per-slice
thresholds in TFX's Evaluator are the model). What is sliced and judged comes from the `evaluate`
section of params.yaml (flywheel/params.py EvaluateParams):

- a slice is a value of one feature, or a pair of values of two crossed features ("a:b");
  numeric features with more distinct values than `slice_bins` are cut into quantile bins; the
  most frequent `max_slices` slices of a grouping are kept and the rest pooled, so a feature with
  thousands of values costs no more than one with twenty;
- each slice has its row count, the task's primary metric (flywheel/evaluation_metrics.py) and a
  percentile bootstrap interval; a slice under `min_slice_rows` rows is reported as too small,
  and one whose metric is undefined (AUC on one class) as undefined; neither is judged;
- criteria, each judged only where the evidence is not noise:
  * gap: within a grouping, the largest difference between two slices whose intervals do not
    overlap must be at most `max_slice_gap`;
  * floor: no slice's interval may lie wholly below `min_slice_auc` / `min_slice_accuracy` (or
    above `max_slice_rmse`);
  * production: on no slice may the candidate be worse than the production model, scored on the
    same rows, by more than `slice_allowed_regression`, where the paired bootstrap interval of the
    difference lies wholly on the worse side (the same resamples score both models).

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

from flywheel import evaluation_metrics as em
from flywheel import names
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
    largest: float                 # between any two judged slices
    apart: float                   # between two slices whose intervals do not overlap (0 if none)
    between: tuple[str, str] | None = None    # the two slices of `apart` (worse first)


@dataclasses.dataclass
class FairnessReport:
    metric: str
    confidence: float
    slices: list[SliceResult]
    gaps: list[Gap]
    failures: list[Failure]
    absent: list[str]              # slice features named in params but not in the data

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line for the run summary and the blessing."""
        judged = sum(1 for s in self.slices if s.status == OK)
        small = sum(1 for s in self.slices if s.status == TOO_SMALL)
        groupings = len({s.grouping for s in self.slices})
        if not self.slices:
            return "no slices" + (f" (not in the data: {', '.join(self.absent)})" if self.absent else "")
        counts = f"{judged} slices judged, {small} too small, over {groupings} groupings"
        if self.failures:
            first = self.failures[0]
            more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            return f"FAILED: {first.message}{more}; {counts}"
        widest = max(self.gaps, key=lambda g: g.largest, default=None)
        gap = ""
        if widest:
            apart = max(self.gaps, key=lambda g: g.apart)
            beyond = (f"; {apart.apart:.3f} with intervals apart ({apart.grouping})" if apart.apart
                      else "; no gap with intervals apart")
            gap = f"; largest {self.metric} gap {widest.largest:.3f} ({widest.grouping}){beyond}"
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


def _draws(size: int, params: EvaluateParams, key: str) -> _Draws:
    rng = np.random.default_rng([params.bootstrap_seed, zlib.crc32(key.encode())])
    rows = np.arange(size)
    if size > params.bootstrap_max_rows:
        rows = np.sort(rng.choice(size, params.bootstrap_max_rows, replace=False))
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
    result = SliceResult(grouping, name, rows, OK if low is not None else UNDEFINED, point, low, high)
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
    return result


# --- criteria -------------------------------------------------------------------------------------

def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval_text(s: SliceResult) -> str:
    return f"{_fmt(s.value)} [{_fmt(s.low)}, {_fmt(s.high)}] on {s.rows} rows"


def gap_of(grouping: str, judged: list[SliceResult], metric: str) -> Gap:
    """The largest gap between judged slices, and the largest between two whose intervals are apart."""
    if len(judged) < 2:
        return Gap(grouping, 0.0, 0.0)
    values = [s.value for s in judged]
    gap = Gap(grouping, float(max(values) - min(values)), 0.0)
    higher_is_better = em.HIGHER_IS_BETTER[metric]
    for a in judged:
        for b in judged:
            if a.high < b.low and b.value - a.value > gap.apart:   # a wholly below b
                worse, better = (a, b) if higher_is_better else (b, a)
                gap.apart, gap.between = float(b.value - a.value), (worse.slice, better.slice)
    return gap


def _floor(metric: str, params: EvaluateParams) -> tuple[float, bool] | None:
    """(bound, is_lower_bound) of the per-slice floor for the metric, or None when off."""
    if metric == "auc":
        return (params.min_slice_auc, True) if params.min_slice_auc > 0 else None
    if metric == "accuracy":
        return (params.min_slice_accuracy, True) if params.min_slice_accuracy > 0 else None
    return (params.max_slice_rmse, False) if params.max_slice_rmse > 0 else None


def judge(slices: list[SliceResult], metric: str, params: EvaluateParams) -> tuple[list[Gap], list[Failure]]:
    """The gaps per grouping and every failed criterion, each explaining itself."""
    gaps, failures = [], []
    by_grouping: dict[str, list[SliceResult]] = {}
    for s in slices:
        by_grouping.setdefault(s.grouping, []).append(s)
    level = f"{params.confidence:.0%}"
    for grouping, members in by_grouping.items():
        judged = [s for s in members if s.status == OK]
        gap = gap_of(grouping, judged, metric)
        gaps.append(gap)
        if gap.between and gap.apart > params.max_slice_gap:
            worse, better = (next(s for s in judged if s.slice == name) for name in gap.between)
            failures.append(Failure(
                GAP, grouping, worse.slice,
                f"{metric} gap {gap.apart:.3f} between {grouping}={worse.slice} ({_interval_text(worse)}) and "
                f"{grouping}={better.slice} ({_interval_text(better)}) exceeds the allowed {params.max_slice_gap} "
                f"and the {level} intervals do not overlap",
                {"gap": gap.apart, "allowed": params.max_slice_gap, "worse": dataclasses.asdict(worse),
                 "better": dataclasses.asdict(better)}))
        floor = _floor(metric, params)
        for s in judged:
            if floor and (s.high < floor[0] if floor[1] else s.low > floor[0]):
                side = "below the floor" if floor[1] else "above the ceiling"
                failures.append(Failure(
                    FLOOR, grouping, s.slice,
                    f"{metric} on {grouping}={s.slice} is {_interval_text(s)}: its {level} interval is wholly "
                    f"{side} {floor[0]}",
                    {"value": s.value, "low": s.low, "high": s.high, "bound": floor[0], "rows": s.rows}))
            if s.worse_by is not None and s.worse_by_low is not None and s.worse_by_low > 0 \
                    and s.worse_by > params.slice_allowed_regression:
                failures.append(Failure(
                    PRODUCTION, grouping, s.slice,
                    f"{metric} on {grouping}={s.slice} is {_interval_text(s)}, worse than production's "
                    f"{_fmt(s.production)} [{_fmt(s.production_low)}, {_fmt(s.production_high)}] on the same rows "
                    f"by {s.worse_by:.3f} ({level} interval of the difference [{_fmt(s.worse_by_low)}, "
                    f"{_fmt(s.worse_by_high)}]), more than the allowed {params.slice_allowed_regression}",
                    {"value": s.value, "production": s.production, "worse_by": s.worse_by,
                     "worse_by_low": s.worse_by_low, "worse_by_high": s.worse_by_high,
                     "allowed": params.slice_allowed_regression, "rows": s.rows}))
    return gaps, failures


def check(params: EvaluateParams) -> None:
    """Settings the bootstrap cannot work with are errors that name the key."""
    problems = []
    if not 0 < params.confidence < 1:
        problems.append(f"evaluate.confidence must be between 0 and 1, not {params.confidence}")
    for key in ("bootstrap_resamples", "bootstrap_max_rows", "slice_bins", "max_slices"):
        if getattr(params, key) < 1:
            problems.append(f"evaluate.{key} must be at least 1, not {getattr(params, key)}")
    if problems:
        raise ValueError("params: " + "; ".join(problems))


def assess(frame: pd.DataFrame, task: str, labels: np.ndarray, outputs: dict, params: EvaluateParams,
           production: tuple[np.ndarray, dict] | None = None) -> FairnessReport:
    """Slice the test rows as params name, measure every slice (candidate, and production's
    (labels, outputs) on the same rows when given) and judge the criteria."""
    check(params)
    metric = em.primary_metric(task)
    sliced, absent = groupings(frame.reset_index(drop=True), params)
    labels = np.asarray(labels)
    results = []
    for grouping, slice_of_row in sliced.items():
        order = np.argsort(slice_of_row.codes, kind="stable")
        bounds = np.searchsorted(slice_of_row.codes[order], np.arange(len(slice_of_row.names) + 1))
        for code in sorted(range(len(slice_of_row.names)), key=lambda c: slice_of_row.names[c]):
            index, name = order[bounds[code]:bounds[code + 1]], slice_of_row.names[code]
            if not len(index):
                continue
            paired = (production[0][index], _subset(production[1], index)) if production is not None else None
            results.append(measure_slice(grouping, str(name), metric, labels[index], _subset(outputs, index),
                                         params, paired))
    gaps, failures = judge(results, metric, params)
    return FairnessReport(metric, params.confidence, results, gaps, failures, absent)
