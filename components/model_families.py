"""The model families the train step tries, and the rule that picks one on the eval split.

Each family is trained on the train split and scored on the eval split (never the test split,
which stays for evaluate). A score is compared with another through a paired bootstrap of the
same rows, so "better" means better beyond the eval split's sampling noise.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from flywheel.evaluation import evaluation_metrics as em
from flywheel.evaluation import fairness

LINEAR, GBT, WIDE_DEEP = "linear", "gbt", "wide_deep"
FAMILIES = (LINEAR, GBT, WIDE_DEEP)
SIMPLEST, BEST = "simplest", "best"
# Rows named when a model answers NaN (the first few; the count says how many in all).
NAMED_ROWS = 10


@dataclasses.dataclass
class Candidate:
    family: str
    status: str = "trained"          # trained | skipped | refused (answers not finite)
    score: float | None = None       # the primary metric on the eval split
    seconds: float = 0.0
    note: str = ""
    outputs: dict | None = dataclasses.field(default=None, repr=False)

    def describe(self) -> str:
        if self.status != "trained":
            return f"{self.status}: {self.note}"
        shown = f"eval {self.score:.4f}" if self.score is not None else "no eval rows"
        return f"{shown}, {self.seconds:.1f}s to train"

    def to_dict(self) -> dict:
        return {"status": self.status, "eval_score": self.score, "seconds": round(self.seconds, 2), "note": self.note}


@dataclasses.dataclass(frozen=True)
class Choice:
    family: str
    rule: str
    metric: str
    reason: str
    candidates: dict       # family -> Candidate.to_dict()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check(params) -> None:
    """params.train's families and selection rule, or a ValueError naming the wrong value."""
    unknown = [f for f in params.families if f not in FAMILIES]
    if unknown or not params.families:
        raise ValueError(f"params: train.families {list(params.families)} must name some of {list(FAMILIES)}")
    if params.selection not in (SIMPLEST, BEST):
        raise ValueError(f"params: train.selection must be '{SIMPLEST}' or '{BEST}', not {params.selection!r}")


def skip_reason(family: str, params, train_rows: int, spent_s: float, distributed: bool) -> str:
    """Why `family` is not trained on this table ("" when it is)."""
    if distributed and family != WIDE_DEEP:
        return "the data streams or several workers share it: only the network trains that way"
    if family == WIDE_DEEP and train_rows > params.wide_deep_max_rows and not distributed:
        return f"{train_rows} train rows > train.wide_deep_max_rows {params.wide_deep_max_rows}"
    if spent_s > params.budget_s:
        return f"the training budget (train.budget_s {params.budget_s:g}s) is spent ({spent_s:.0f}s)"
    return ""


def not_finite_rows(outputs: dict) -> np.ndarray:
    """Positions of the rows for which some output is NaN or infinite."""
    bad = np.zeros(len(next(iter(outputs.values()))), dtype=bool)
    for values in outputs.values():
        values = np.asarray(values, dtype=np.float64)
        bad |= ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    return np.flatnonzero(bad)


def rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:NAMED_ROWS])
    return f"{len(rows)} row(s) (positions {shown}{', ...' if len(rows) > NAMED_ROWS else ''})"


def scored(family: str, task: str, labels: np.ndarray, outputs: dict | None, seconds: float) -> Candidate:
    """A trained candidate with its eval score, or refused when it answers NaN for some eval rows."""
    if outputs is None:
        return Candidate(family, seconds=seconds, note="no eval rows")
    bad = not_finite_rows(outputs)
    if len(bad):
        return Candidate(family, "refused", seconds=seconds,
                         note=f"answers NaN or infinity for {rows_text(bad)} of the eval split")
    score = em.task_metrics(task, labels, outputs)[em.primary_metric(task)]
    if not np.isfinite(score):
        return Candidate(family, seconds=seconds, note="the metric is not defined on the eval split", outputs=outputs)
    return Candidate(family, score=float(score), seconds=seconds, outputs=outputs)


def lead_interval(metric: str, labels: np.ndarray, a: dict, b: dict, confidence: float, resamples: int,
                  seed: int) -> tuple[float, float, float]:
    """(point, low, high) of how much better `a` scores than `b` on the same rows (positive: a is
    better; RMSE counted as b's minus a's), by a paired bootstrap with `resamples` draws."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    index = np.vstack([np.arange(n)[None, :], rng.integers(0, n, size=(resamples, n))])
    sign = -1.0 if metric == "rmse" else 1.0
    lead = sign * (fairness.resampled_metric(metric, labels, a, index) - fairness.resampled_metric(metric, labels, b, index))
    draws = lead[1:][np.isfinite(lead[1:])]
    if not np.isfinite(lead[0]) or len(draws) < 0.9 * resamples:
        return float(lead[0]), float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(lead[0]), float(low), float(high)


def select(candidates: dict[str, Candidate], task: str, labels: np.ndarray, params, table_rows: int) -> Choice:
    """The family params.selection picks among the scored candidates (in params.families' order).
    `simplest` keeps a simpler family only on tables of fewer than params.simplest_below_rows
    train+eval rows (`table_rows`); from there on it takes the best eval score, like `best`."""
    metric = em.primary_metric(task)
    summary = {f: c.to_dict() for f, c in candidates.items()}
    usable = [c for c in candidates.values() if c.status == "trained"]
    if not usable:
        raise ValueError("no model family could be used: "
                         + "; ".join(f"{f} {c.describe()}" for f, c in candidates.items()))
    scored_ = [c for c in usable if c.score is not None]
    if not scored_:
        return Choice(usable[0].family, params.selection, metric,
                      "no eval score to compare (the eval split is empty): the first family listed", summary)
    better = min if metric == "rmse" else max
    best = better(scored_, key=lambda c: c.score)
    if params.selection == BEST or best is scored_[0]:
        return Choice(best.family, params.selection, metric, f"the best eval {metric} ({best.score:.4f})", summary)
    if table_rows >= params.simplest_below_rows:
        return Choice(best.family, params.selection, metric,
                      f"the best eval {metric} ({best.score:.4f}); {table_rows} train+eval rows >= "
                      f"train.simplest_below_rows {params.simplest_below_rows}, so no lead is needed", summary)
    for simpler in scored_:
        if simpler is best:
            break
        point, low, high = lead_interval(metric, labels, best.outputs, simpler.outputs, params.selection_confidence,
                                         params.selection_resamples, params.seed)
        if not low > 0:   # the best's lead is within noise (or undefined): the simpler one
            return Choice(simpler.family, params.selection, metric,
                          f"eval {metric} {simpler.score:.4f}; {best.family}'s lead of {point:.4f} is within its "
                          f"{params.selection_confidence:.0%} interval [{low:.4f}, {high:.4f}]", summary)
        summary[simpler.family]["note"] = (f"{best.family} leads by {point:.4f} "
                                           f"[{low:.4f}, {high:.4f}] on the eval split")
    return Choice(best.family, params.selection, metric,
                  f"the best eval {metric} ({best.score:.4f}), ahead of the simpler families beyond noise", summary)
