"""Model quality metrics in numpy: what evaluate computes, overall and per slice.

ROC AUC is the Mann-Whitney U statistic (ties counted half), so no scikit-learn is needed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel import names

HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "rmse": False}


def primary_metric(task: str) -> str:
    return {names.BINARY: "auc", names.MULTICLASS: "accuracy", names.REGRESSION: "rmse"}[task]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic, ties counted half."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    eps = 1e-7
    if probabilities.ndim == 1:
        p = np.clip(probabilities, eps, 1 - eps)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    p = np.clip(probabilities[np.arange(len(labels)), labels.astype(int)], eps, 1)
    return float(-np.mean(np.log(p)))


def roc_curve(labels: np.ndarray, scores: np.ndarray, points: int = 101) -> dict:
    thresholds = np.linspace(1.0, 0.0, points)
    positives = max(int((labels == 1).sum()), 1)
    negatives = max(int((labels == 0).sum()), 1)
    tpr = [float(((scores >= t) & (labels == 1)).sum() / positives) for t in thresholds]
    fpr = [float(((scores >= t) & (labels == 0)).sum() / negatives) for t in thresholds]
    return {"fpr": fpr, "tpr": tpr, "thresholds": [float(t) for t in thresholds]}


def confusion(labels: np.ndarray, predicted: np.ndarray, categories: list) -> dict:
    k = len(categories)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (labels.astype(int), predicted.astype(int)), 1)
    return {"categories": [str(c) for c in categories], "matrix": matrix.tolist()}


def task_metrics(task: str, labels: np.ndarray, outputs: dict) -> dict:
    if task == names.BINARY:
        scores = outputs[names.OUTPUT_SCORE]
        return {"auc": auc(labels, scores), "accuracy": float(np.mean((scores >= 0.5) == (labels == 1))),
                "log_loss": log_loss(labels, scores), "rows": int(len(labels))}
    if task == names.MULTICLASS:
        probabilities = outputs[names.OUTPUT_PROBABILITIES]
        return {"accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
                "log_loss": log_loss(labels, probabilities), "rows": int(len(labels))}
    error = outputs[names.OUTPUT_SCORE] - labels
    return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error))), "rows": int(len(labels))}


def worse_by(metric: str, candidate: float, reference: float) -> float:
    """How much worse `candidate` is than `reference` in the metric's own units (negative = better)."""
    return (reference - candidate) if HIGHER_IS_BETTER[metric] else (candidate - reference)
