"""Simple models trained on the same split as the candidate, so a reader (and the blessing) can see
whether the network earned its place: the majority class (or the train mean for regression), and
a linear model (L2-regularised logistic regression, one-vs-rest for several classes; ridge for
regression) on the same columns, encoded the way the model encodes them.

Plain numpy: Newton's method on at most a few hundred encoded columns converges in a few
iterations, deterministically, with no dependency the component image would not otherwise carry.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from flywheel import labels, names
from flywheel.evaluation import evaluation_metrics as em
from flywheel.schema_view import Feature
from flywheel.temporal import timeparts

MAJORITY, MEAN, LINEAR = "majority", "mean", "linear"
MAX_LEVELS = 50            # one-hot levels per categorical column (the commonest in train)
RIDGE = 1.0                # L2 strength on the weights, as scikit-learn's default C=1
NEWTON_STEPS = 30


@dataclasses.dataclass(frozen=True)
class Baselines:
    metric: str
    values: dict[str, float]            # {"majority" or "mean": x, "linear": y}, in the primary metric
    # Each baseline's answers on the scored rows (names.OUTPUT_*), for paired intervals against the candidate.
    outputs: dict[str, dict] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def trivial(self) -> str:
        return MEAN if MEAN in self.values else MAJORITY

    def to_dict(self) -> dict:
        return {"metric": self.metric, **self.values}


class _Encoder:
    """Columns of the train split turned into a numeric design matrix, then the same for other frames."""

    def __init__(self, train: pd.DataFrame, features: list[Feature]):
        self.steps = []
        for feature in features:
            column = train[feature.name]
            if feature.time:
                seconds = timeparts.parse(column.to_numpy(dtype=object)).seconds
                trend = timeparts.parts(seconds, False)[timeparts.TREND]
                self.steps.append(("time", feature.name, _finite_median(seconds), _center(trend), feature.time_of_day))
            elif feature.categorical or feature.kind == "string":
                levels = column.astype(str).value_counts().index[:MAX_LEVELS].tolist()
                self.steps.append(("levels", feature.name, levels))
            else:
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
                self.steps.append(("number", feature.name, _center(values), bool(np.isnan(values).any())))

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        blocks = [np.ones((len(frame), 1))]
        for kind, name, *args in self.steps:
            column = frame[name]
            if kind == "levels":
                text = column.astype(str).to_numpy()
                blocks.append((text[:, None] == np.array(args[0], dtype=object)[None, :]).astype(float))
            elif kind == "number":
                (mean, sd), flag_missing = args
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
                missing = np.isnan(values)
                blocks.append(((np.where(missing, mean, values) - mean) / sd)[:, None])
                if flag_missing:
                    blocks.append(missing[:, None].astype(float))
            else:
                fill, (mean, sd), has_time = args
                seconds = timeparts.parse(column.to_numpy(dtype=object)).seconds
                missing = np.isnan(seconds)
                p = timeparts.parts(np.where(missing, fill, seconds), has_time)
                angle = 2 * np.pi * (p[timeparts.DAY_OF_YEAR] - 1) / 365.2425
                blocks += [((p[timeparts.TREND] - mean) / sd)[:, None], np.sin(angle)[:, None], np.cos(angle)[:, None],
                           missing[:, None].astype(float),
                           (p[timeparts.WEEKDAY][:, None] == np.arange(7)[None, :]).astype(float)]
                if has_time:
                    blocks.append((p[timeparts.HOUR][:, None] == np.arange(24)[None, :]).astype(float))
        return np.hstack(blocks)


def _center(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    sd = float(finite.std())
    return float(finite.mean()), sd if sd > 1e-12 else 1.0


def _finite_median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else 0.0


def _penalty(width: int) -> np.ndarray:
    penalty = np.full(width, RIDGE)
    penalty[0] = 0.0            # the intercept is not shrunk
    return penalty


def logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights of an L2-regularised logistic regression (column 0 of x is the intercept), by Newton."""
    w = np.zeros(x.shape[1])
    penalty = _penalty(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return w


def ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.solve(x.T @ x + np.diag(_penalty(x.shape[1]) + 1e-9), x.T @ y)


def linear_outputs(task: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int) -> dict:
    """The linear model's outputs on x_test, in the serving signature's shape (names.OUTPUT_*)."""
    if task == names.REGRESSION:
        return {names.OUTPUT_SCORE: x_test @ ridge(x_train, y_train.astype(float))}
    if task == names.BINARY:
        return {names.OUTPUT_SCORE: 1 / (1 + np.exp(-np.clip(x_test @ logistic(x_train, y_train.astype(float)), -30, 30)))}
    scores = np.column_stack([x_test @ logistic(x_train, (y_train == k).astype(float)) for k in range(classes)])
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return {names.OUTPUT_SCORE: probabilities.argmax(axis=1).astype(float), names.OUTPUT_PROBABILITIES: probabilities}


def trivial_outputs(task: str, y_train: np.ndarray, rows: int, classes: int) -> dict:
    """The majority class's (classification) or the train mean's (regression) outputs for `rows` rows."""
    if task == names.REGRESSION:
        return {names.OUTPUT_SCORE: np.full(rows, float(np.mean(y_train)))}
    shares = np.bincount(y_train.astype(int), minlength=max(classes, 2)) / max(len(y_train), 1)
    if task == names.BINARY:
        return {names.OUTPUT_SCORE: np.full(rows, shares[1])}
    probabilities = np.tile(shares[:classes], (rows, 1))
    return {names.OUTPUT_SCORE: np.full(rows, float(shares.argmax())), names.OUTPUT_PROBABILITIES: probabilities}


def assess(train: pd.DataFrame, test: pd.DataFrame, metadata: dict, features: list[Feature]) -> Baselines:
    """Both baselines trained on `train` (rows with a label the model knows) and scored on `test`."""
    label, task = metadata["label"], metadata["task"]
    vocabulary = metadata.get("label_vocabulary", [])
    train = train[train[label].notna()]
    if vocabulary:
        train = train[train[label].isin(vocabulary)]
    y_train = labels.encode(train[label], task, vocabulary)
    y_test = labels.encode(test[label], task, vocabulary)
    classes = len(vocabulary)
    encoder = _Encoder(train, features)
    metric = em.primary_metric(task)
    trivial = MEAN if task == names.REGRESSION else MAJORITY
    outputs = {trivial: trivial_outputs(task, y_train, len(test), classes),
               LINEAR: linear_outputs(task, encoder(train), y_train, encoder(test), classes)}
    return Baselines(metric, {name: em.task_metrics(task, y_test, out)[metric] for name, out in outputs.items()},
                     outputs)
