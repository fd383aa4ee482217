"""Confidence-based performance estimation (CBPE, after NannyML): a classifier's accuracy, and
ROC AUC for a binary one, expected from its predicted probabilities alone, before labels arrive.

If the probabilities are calibrated (of the rows scored 0.8, 80% are positive), each row is
right with probability max(p, 1 - p) (binary, threshold 0.5) or max_k p_k (multiclass), so the
expected accuracy over a window is their mean, and its sampling spread follows from the rows
being independent Bernoulli trials. The probabilities are first passed through a calibration map
fitted on the evaluation split (histogram binning); `check` measures on labelled rows the model
never calibrated on whether the estimate can be trusted.

The estimate tracks covariate shift (the inputs move, P(label | inputs) stays): the model's
confidence moves with them. It is blind to concept shift (P(label | inputs) changes): the model
is as confident as before and wrong more often; only live labels show that.

Pure functions of numpy arrays: the evaluate step and the sidecar share them.
"""
from __future__ import annotations

import dataclasses

import numpy as np

Z_95 = 1.959964   # two-sided 95% normal quantile


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Histogram-binning calibration: scores in bin i (equal-width on [0, 1]) map to the share
    of positives the fitting rows of that bin had (a bin without rows keeps its centre)."""
    edges: tuple[float, ...]
    values: tuple[float, ...]

    def apply(self, scores: np.ndarray) -> np.ndarray:
        scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        index = np.clip(np.searchsorted(np.asarray(self.edges), scores, side="right") - 1, 0, len(self.values) - 1)
        return np.asarray(self.values)[index]

    def to_dict(self) -> dict:
        return {"edges": list(self.edges), "values": list(self.values)}

    @classmethod
    def from_dict(cls, raw: dict) -> "Calibration":
        edges, values = tuple(float(e) for e in raw["edges"]), tuple(float(v) for v in raw["values"])
        if len(edges) != len(values) + 1 or len(values) < 1:
            raise ValueError(f"calibration: {len(edges)} edges for {len(values)} values")
        return cls(edges, values)


def fit_calibration(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> Calibration:
    """Fit the binning map on labelled binary rows (labels 0/1, scores P(positive))."""
    scores, labels = np.clip(np.asarray(scores, dtype=np.float64), 0, 1), np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    positives = np.bincount(index, weights=labels, minlength=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    values = np.where(counts > 0, positives / np.maximum(counts, 1), centres)
    return Calibration(tuple(float(e) for e in edges), tuple(float(v) for v in values))


def calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of binary scores: the row-weighted mean |mean score - share of
    positives| over equal-width bins."""
    scores, labels = np.clip(np.asarray(scores, dtype=np.float64), 0, 1), np.asarray(labels, dtype=np.float64)
    if scores.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, weights=scores, minlength=bins) - np.bincount(index, weights=labels, minlength=bins))
    return float(gap.sum() / counts.sum())


@dataclasses.dataclass(frozen=True)
class Estimate:
    rows: int
    accuracy: float
    accuracy_low: float       # 95% band of the realised accuracy around the estimate
    accuracy_high: float
    roc_auc: float | None = None   # binary only

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _band(right: np.ndarray) -> tuple[float, float, float]:
    n = right.size
    mean = float(right.mean())
    spread = Z_95 * float(np.sqrt(np.sum(right * (1 - right)))) / n
    return mean, max(0.0, mean - spread), min(1.0, mean + spread)


def expected_roc_auc(probabilities: np.ndarray) -> float:
    """ROC AUC expected from calibrated P(positive): each row counts as p of a positive and
    1 - p of a negative; the curve is swept over the scores, highest first (ties together)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.size < 2:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    ranked = p[order]
    true_pos, false_pos = np.cumsum(ranked), np.cumsum(1 - ranked)
    last = np.r_[np.nonzero(np.diff(ranked))[0], ranked.size - 1]   # one point per distinct score
    positives, negatives = true_pos[-1], false_pos[-1]
    if positives <= 0 or negatives <= 0:
        return float("nan")
    tpr = np.r_[0.0, true_pos[last] / positives]
    fpr = np.r_[0.0, false_pos[last] / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def estimate_binary(scores: np.ndarray, calibration: Calibration | None = None, threshold: float = 0.5) -> Estimate:
    """Expected accuracy (at `threshold` on the raw score, as the model predicts) and ROC AUC."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("performance estimate: no rows")
    p = calibration.apply(scores) if calibration else np.clip(scores, 0, 1)
    right = np.where(scores >= threshold, p, 1 - p)
    accuracy, low, high = _band(right)
    return Estimate(int(scores.size), accuracy, low, high, expected_roc_auc(p))


def estimate_multiclass(probabilities: np.ndarray) -> Estimate:
    """Expected accuracy of argmax predictions: the mean of the top class probability."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise ValueError(f"performance estimate: expected rows x classes, got shape {probabilities.shape}")
    accuracy, low, high = _band(probabilities.max(axis=1))
    return Estimate(int(probabilities.shape[0]), accuracy, low, high)


@dataclasses.dataclass(frozen=True)
class Check:
    """Whether the estimate can be trusted for this model: measured on labelled rows the
    calibration map was not fitted on."""
    trustworthy: bool
    reason: str
    calibration_error: float          # after the map
    raw_calibration_error: float      # of the model's own scores
    estimated_accuracy: float
    realised_accuracy: float
    estimated_roc_auc: float | None
    realised_roc_auc: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_binary(calibration: Calibration, scores: np.ndarray, labels: np.ndarray, bins: int,
                 max_calibration_error: float, max_estimate_error: float) -> Check:
    from flywheel.evaluation import evaluation_metrics as em

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    calibrated = calibration.apply(scores)
    error, raw = calibration_error(calibrated, labels, bins), calibration_error(scores, labels, bins)
    estimate = estimate_binary(scores, calibration)
    realised = float(np.mean((scores >= 0.5) == (labels >= 0.5)))
    realised_auc = float(em.task_metrics("binary", labels, {"score": scores}).get("auc", np.nan))
    gap = abs(estimate.accuracy - realised)
    # The test split is a sample: the realised accuracy itself is only known to within the
    # estimate's sampling band, so the gap allowed is the band's half-width plus the margin.
    allowed = max_estimate_error + (estimate.accuracy_high - estimate.accuracy_low) / 2
    if not error <= max_calibration_error:
        trustworthy, reason = False, (f"calibration error {error:.4f} after calibration is above "
                                      f"{max_calibration_error}")
    elif not gap <= allowed:
        trustworthy, reason = False, (f"estimated accuracy {estimate.accuracy:.4f} is {gap:.4f} from the realised "
                                      f"{realised:.4f}, more than {allowed:.4f} ({max_estimate_error} plus the "
                                      f"sampling band of {scores.size} rows)")
    else:
        trustworthy, reason = True, (f"calibration error {error:.4f}; estimated accuracy {estimate.accuracy:.4f} "
                                     f"vs realised {realised:.4f} on the test split")
    return Check(trustworthy, reason, error, raw, estimate.accuracy, realised, estimate.roc_auc, realised_auc)


def check_multiclass(probabilities: np.ndarray, labels: np.ndarray, max_estimate_error: float) -> Check:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    estimate = estimate_multiclass(probabilities)
    realised = float(np.mean(probabilities.argmax(axis=1) == np.asarray(labels)))
    allowed = max_estimate_error + (estimate.accuracy_high - estimate.accuracy_low) / 2
    trustworthy = abs(estimate.accuracy - realised) <= allowed
    reason = (f"estimated accuracy {estimate.accuracy:.4f} vs realised {realised:.4f} on the test split"
              + ("" if trustworthy else f": more than {allowed:.4f} apart"))
    return Check(trustworthy, reason, float("nan"), float("nan"), estimate.accuracy, realised, None, None)
