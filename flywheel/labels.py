"""The label: which task it makes (binary, multiclass, regression) and how its values are encoded.

Train decides the task and the label vocabulary once and records both in the model metadata;
evaluate, the sidecar's feedback and every later reader encode labels through this module, so a
class index means the same thing everywhere.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel import names
from flywheel.errors import DataError

MAX_CLASSES = 50          # more distinct labels than this is not a classification task we support
MAX_INTEGER_CLASSES = 20  # an integer label with more distinct values than this is a regression target


def infer_task(labels: pd.Series, label: str) -> tuple[str, list]:
    """Binary, multiclass or regression, and the label vocabulary (sorted) for classification."""
    values = labels.dropna()
    distinct = sorted(values.unique().tolist(), key=str)
    if len(distinct) < 2:
        raise DataError("the train split", f"the label has a single value {distinct!r}, so there is nothing to learn",
                        column=label, hint="Check the label column and the data.")
    if pd.api.types.is_numeric_dtype(values):
        integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
        if integral and len(distinct) == 2:
            return names.BINARY, sorted(distinct)
        if integral and len(distinct) <= MAX_INTEGER_CLASSES:
            return names.MULTICLASS, sorted(distinct)
        return names.REGRESSION, []
    if len(distinct) == 2:
        return names.BINARY, distinct
    if len(distinct) <= MAX_CLASSES:
        return names.MULTICLASS, distinct
    raise DataError("the train split", f"the label is a string with {len(distinct)} distinct values "
                    f"(more than {MAX_CLASSES})", column=label,
                    hint="Flywheel trains classification (up to 50 classes) or regression models.")


def encode(labels: pd.Series, task: str, vocabulary: list) -> np.ndarray:
    """Label values as the model is trained on them: class indices in vocabulary order, or floats."""
    if task == names.REGRESSION:
        return labels.to_numpy(dtype=np.float32)
    index = {value: i for i, value in enumerate(vocabulary)}
    return labels.map(index).to_numpy(dtype=np.float32 if task == names.BINARY else np.int64)
