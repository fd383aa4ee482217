"""Split data turned into model inputs, and models scored through their serving signature.

Train, evaluate and every later scorer use these, so they agree on names, dtypes and missing-value
handling; serving agrees because the preprocessing lives in the exported model itself.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from flywheel import artifacts, bundle, names
from flywheel.schema_view import FLOAT, INT, STRING, Feature

SCORING_BATCH = 2048


def read_split(examples_dir: str, split: str) -> pd.DataFrame:
    return artifacts.read_split(examples_dir, split)


def fill_values(frame: pd.DataFrame, features: list[Feature]) -> dict[str, object]:
    """What stands in for a missing value. Floats stay NaN (the model imputes them, so serving
    may send NaN too); integers, which serving cannot send as NaN, take the training median;
    strings take "" (out of vocabulary)."""
    fills: dict[str, object] = {}
    for feature in features:
        if feature.kind == INT:
            median = frame[feature.name].median() if feature.name in frame else 0
            fills[feature.name] = 0 if pd.isna(median) else int(median)
        elif feature.kind == STRING:
            fills[feature.name] = ""
    return fills


def to_inputs(frame: pd.DataFrame, features: list[Feature], fills: dict[str, object]) -> dict[str, np.ndarray]:
    """Columns as the serving signature takes them, keyed by signature key: float32, int64 or
    object (bytes-like) arrays."""
    inputs = {}
    for feature in features:
        if feature.name not in frame:
            raise KeyError(f"feature '{feature.name}' is in the schema but not in the data (columns: {list(frame.columns)})")
        column = frame[feature.name]
        if feature.kind == FLOAT:
            inputs[feature.signature_key] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float32)
        elif feature.kind == INT:
            inputs[feature.signature_key] = (pd.to_numeric(column, errors="coerce").fillna(fills[feature.name])
                                             .to_numpy(dtype=np.int64))
        else:
            inputs[feature.signature_key] = column.fillna(fills[feature.name]).astype(str).to_numpy(dtype=object)
    return inputs


def model_features(metadata: dict) -> list[Feature]:
    """The model's inputs as train recorded them in its metadata."""
    keys = metadata.get("signature_keys", {})
    categorical = set(metadata.get("categorical", []))
    times = metadata.get("time_formats", {})
    return [Feature(name, kind, name in categorical, time_format=times.get(name, ""), key=keys.get(name, ""))
            for name, kind in metadata["features"].items()]


class Scorer:
    """A SavedModel's `serving_default` loaded once, scoring frames in chunks of SCORING_BATCH rows
    (the call TF Serving makes), with features prepared as the model was trained."""

    def __init__(self, model_dir: str):
        import tensorflow as tf
        import tensorflow_decision_forests  # noqa: F401  (registers the ops a gradient-boosted-trees model calls)

        self.metadata = bundle.read_metadata(model_dir)
        self.features = model_features(self.metadata)
        self.fills = self.metadata.get("fill_values", {})
        self._serve = tf.saved_model.load(model_dir).signatures[names.SIGNATURE]

    def __call__(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        import tensorflow as tf

        inputs = to_inputs(frame, self.features, self.fills)
        chunks: dict[str, list] = {}
        for start in range(0, len(frame), SCORING_BATCH):
            batch = {k: tf.constant(v[start:start + SCORING_BATCH]) for k, v in inputs.items()}
            for key, value in self._serve(**batch).items():
                chunks.setdefault(key, []).append(value.numpy())
        return {k: np.concatenate(v) for k, v in chunks.items()}


def predict(model_dir: str, frame: pd.DataFrame) -> tuple[dict, dict]:
    """(outputs as numpy arrays, the model's metadata): the rows scored through `serving_default`."""
    scorer = Scorer(model_dir)
    return scorer(frame), scorer.metadata
