"""Evaluate: metrics on the test split, per slice, against the production model; the blessing.

Both models are scored through their `serving_default` signature, the same call TF Serving
makes, so what is evaluated is what would be served.
"""

import dataclasses
import json
import os
import time

import numpy as np
import pandas as pd
from kfp import dsl

from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import names
from flywheel.params import EvaluateParams

MIN_SLICE_ROWS = 30      # slices smaller than this are reported but left out of the gap
NUMERIC_SLICE_BINS = 4   # a numeric slice feature with many values is cut into quartiles
BATCH = 2048
HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "rmse": False}


@dataclasses.dataclass
class Evaluation:
    task: str
    primary_metric: str
    metrics: dict
    slices: dict
    slice_gap: float
    blessed: bool
    reason: str
    production_version: int | None = None
    production_metrics: dict | None = None
    confusion_matrix: dict | None = None
    roc_curve: dict | None = None
    test_rows: int = 0
    seconds: float = 0.0


def primary_metric(task: str) -> str:
    return {names.BINARY: "auc", names.MULTICLASS: "accuracy", names.REGRESSION: "rmse"}[task]


# --- metrics (numpy; no scikit-learn in the image) ------------------------------------------
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


# --- scoring through the serving signature --------------------------------------------------
def load_serving_fn(model_dir: str):
    import tensorflow as tf

    return tf.saved_model.load(model_dir).signatures[names.SIGNATURE]


def predict(model_dir: str, frame: pd.DataFrame) -> tuple[dict, dict]:
    """(outputs as numpy arrays, the model's metadata); features prepared as the model was trained."""
    import tensorflow as tf

    from flywheel import features

    metadata = features.read_model_metadata(model_dir)
    specs = [features.FeatureSpec(name, kind, name in metadata.get("categorical", []))
             for name, kind in metadata["features"].items()]
    inputs = features.to_inputs(frame, specs, metadata.get("fill_values", {}))
    serve = load_serving_fn(model_dir)
    chunks: dict[str, list] = {}
    for start in range(0, len(frame), BATCH):
        batch = {k: tf.constant(v[start:start + BATCH]) for k, v in inputs.items()}
        for key, value in serve(**batch).items():
            chunks.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in chunks.items()}, metadata


def encoded_labels(frame: pd.DataFrame, metadata: dict) -> np.ndarray:
    from components.train import encode_labels

    return encode_labels(frame[metadata["label"]], metadata["task"], metadata.get("label_vocabulary", []))


def slice_values(frame: pd.DataFrame, feature: str) -> pd.Series:
    column = frame[feature]
    if pd.api.types.is_numeric_dtype(column) and column.nunique() > 10:
        return pd.qcut(column, NUMERIC_SLICE_BINS, duplicates="drop").astype(str)
    return column.astype(str).fillna("<missing>")


def sliced_metrics(task: str, labels: np.ndarray, outputs: dict, slices: pd.Series, metric: str) -> tuple[dict, float]:
    per_slice, scored = {}, []
    for value in sorted(slices.unique(), key=str):
        mask = (slices == value).to_numpy()
        result = task_metrics(task, labels[mask], {k: v[mask] for k, v in outputs.items()})
        per_slice[str(value)] = result
        if mask.sum() >= MIN_SLICE_ROWS and np.isfinite(result.get(metric, np.nan)):
            scored.append(result[metric])
    gap = float(max(scored) - min(scored)) if len(scored) > 1 else 0.0
    return per_slice, gap


def bless(task: str, metrics: dict, production: dict | None, config: EvaluateParams) -> tuple[bool, str]:
    metric = primary_metric(task)
    value = metrics[metric]
    if not np.isfinite(value):
        return False, f"{metric} is not defined on the test split (one class only?)"
    if task == names.BINARY and value < config.min_auc:
        return False, f"auc {value:.4f} is below the floor {config.min_auc}"
    if task == names.MULTICLASS and value < config.min_accuracy:
        return False, f"accuracy {value:.4f} is below the floor {config.min_accuracy}"
    if task == names.REGRESSION and config.max_rmse > 0 and value > config.max_rmse:
        return False, f"rmse {value:.4f} is above the ceiling {config.max_rmse}"
    if production is None:
        return True, f"{metric} {value:.4f} passes the floor; no production model to compare with"
    baseline = production[metric]
    worse_by = (baseline - value) if HIGHER_IS_BETTER[metric] else (value - baseline)
    if worse_by > config.allowed_regression:
        return False, (f"{metric} {value:.4f} is worse than production's {baseline:.4f} by {worse_by:.4f}, "
                       f"more than the allowed {config.allowed_regression}")
    return True, f"{metric} {value:.4f} vs production {baseline:.4f} (allowed regression {config.allowed_regression})"


def run(examples_dir: str, model_dir: str, output_dir: str, config: EvaluateParams = EvaluateParams(),
        model_repository: str = "", model_name: str = "", data_version: str = "") -> Evaluation:
    """Evaluate `model_dir` on <examples_dir>/test and the production model on the same rows.

    Writes blessing.json, metrics.json, eval_predictions.json and model_card.md to output_dir."""
    from flywheel import features
    from flywheel import model_repository as repo
    from flywheel.errors import DataError

    started = time.time()
    test = features.read_split(examples_dir, names.TEST)
    metadata = features.read_model_metadata(model_dir)
    label, task = metadata["label"], metadata["task"]
    if label not in test:
        raise DataError(f"the test split in {examples_dir}", "the label column is missing", column=label)
    test = test[test[label].notna()]
    if metadata.get("label_vocabulary"):
        test = test[test[label].isin(metadata["label_vocabulary"])]
    if test.empty:
        raise DataError(f"the test split in {examples_dir}", "no row has a label value the model knows", column=label)
    labels = encoded_labels(test, metadata)
    outputs, _ = predict(model_dir, test)
    metrics = task_metrics(task, labels, outputs)
    metric = primary_metric(task)
    slices, gap = ({}, 0.0)
    if config.slice_feature and config.slice_feature in test:
        slices, gap = sliced_metrics(task, labels, outputs, slice_values(test, config.slice_feature), metric)

    production_version = repo.latest_version(model_repository, model_name) if model_repository else None
    production_metrics = None
    if production_version is not None:
        production_dir = repo.version_dir(model_repository, model_name, production_version)
        production_meta = features.read_model_metadata(production_dir)
        if (production_meta["label"], production_meta["task"]) != (label, task):
            raise DataError(
                production_dir, f"the production model predicts '{production_meta['label']}' ({production_meta['task']}) "
                f"but the candidate predicts '{label}' ({task})", column=label,
                hint="Use another model name for another target.")
        production_outputs, _ = predict(production_dir, test)
        production_metrics = task_metrics(task, encoded_labels(test, production_meta), production_outputs)
    blessed, reason = bless(task, metrics, production_metrics, config)

    result = Evaluation(task=task, primary_metric=metric, metrics=metrics, slices=slices, slice_gap=gap,
                        blessed=blessed, reason=reason, production_version=production_version,
                        production_metrics=production_metrics, test_rows=int(len(test)))
    vocabulary = metadata.get("label_vocabulary", [])
    if task == names.BINARY:
        result.roc_curve = roc_curve(labels, outputs[names.OUTPUT_SCORE])
        result.confusion_matrix = confusion(labels, outputs[names.OUTPUT_SCORE] >= 0.5, vocabulary)
    elif task == names.MULTICLASS:
        result.confusion_matrix = confusion(labels, outputs[names.OUTPUT_PROBABILITIES].argmax(axis=1), vocabulary)
    result.seconds = time.time() - started

    # All four files or none: push must never find a blessing without the files it copies.
    with atomic_dir(output_dir) as staging:
        _write_json(os.path.join(staging, names.BLESSING_FILE),
                    {"blessed": blessed, "reason": reason, "metric": metric, "candidate": metrics[metric],
                     "production_version": production_version,
                     "production": production_metrics[metric] if production_metrics else None})
        _write_json(os.path.join(staging, "metrics.json"), dataclasses.asdict(result))
        _write_json(os.path.join(staging, names.EVAL_PREDICTIONS),
                    {"values": [float(v) for v in outputs[names.OUTPUT_SCORE]]})
        with open(os.path.join(staging, names.MODEL_CARD), "w") as f:
            f.write(model_card(model_name, metadata, result, data_version))
    return result


def _write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, default=float)


def model_card(model_name: str, metadata: dict, result: Evaluation, data_version: str) -> str:
    """A Markdown model card: purpose, data, features, metrics, slices, the blessing decision."""
    def row(name, value):
        return f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |"

    lines = [f"# Model card: {model_name or 'model'}", "",
             "## Purpose",
             f"Predicts `{metadata['label']}` ({metadata['task']}) from raw features; trained and pushed by the "
             "Flywheel pipeline and served by TF Serving behind the monitoring sidecar.", "",
             "## Data", f"- data version: `{data_version or metadata.get('data_version') or 'unknown'}`",
             f"- test rows: {result.test_rows}", "",
             "## Features", "| feature | type |", "|---|---|"]
    lines += [f"| {name} | {kind}{' (categorical)' if name in metadata.get('categorical', []) else ''} |"
              for name, kind in metadata["features"].items()]
    lines += ["", "## Metrics (test split)", "| metric | value |", "|---|---|"]
    lines += [row(k, v) for k, v in result.metrics.items()]
    if result.production_metrics:
        lines += ["", f"Production (v{result.production_version}) on the same rows:", "| metric | value |", "|---|---|"]
        lines += [row(k, v) for k, v in result.production_metrics.items()]
    if result.slices:
        lines += ["", f"## Slices (largest gap in {result.primary_metric}: {result.slice_gap:.4f})",
                  f"| slice | rows | {result.primary_metric} |", "|---|---|---|"]
        lines += [f"| {k} | {v['rows']} | {v.get(result.primary_metric, float('nan')):.4f} |"
                  for k, v in result.slices.items()]
    lines += ["", "## Blessing", f"**{'BLESSED' if result.blessed else 'NOT BLESSED'}**: {result.reason}", ""]
    return "\n".join(lines)


@flywheel_component
def evaluate_component(examples: dsl.Input[dsl.Dataset], model: dsl.Input[dsl.Model], slice_feature: str,
                       min_auc: float, min_accuracy: float, max_rmse: float, allowed_regression: float,
                       model_repository: str, model_name: str,
                       evaluation: dsl.Output[dsl.Artifact], metrics: dsl.Output[dsl.Metrics],
                       classification_metrics: dsl.Output[dsl.ClassificationMetrics],
                       model_card: dsl.Output[dsl.Markdown]):
    import os
    import shutil

    from components.evaluate import run
    from flywheel.params import EvaluateParams
    from flywheel import names

    result = run(examples.path, model.path, evaluation.path,
                 EvaluateParams(slice_feature=slice_feature, min_auc=min_auc, min_accuracy=min_accuracy,
                            max_rmse=max_rmse, allowed_regression=allowed_regression),
                 model_repository=model_repository, model_name=model_name,
                 data_version=examples.metadata.get("data_version", ""))
    for key, value in result.metrics.items():
        metrics.log_metric(key, value)
    metrics.log_metric("slice_gap", result.slice_gap)
    if result.roc_curve:
        roc = result.roc_curve
        classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    if result.confusion_matrix:
        classification_metrics.log_confusion_matrix(result.confusion_matrix["categories"],
                                                    result.confusion_matrix["matrix"])
    shutil.copyfile(os.path.join(evaluation.path, names.MODEL_CARD), model_card.path)
    evaluation.metadata.update({"blessed": result.blessed, "reason": result.reason,
                                "production_version": result.production_version})
