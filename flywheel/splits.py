"""The deterministic train/eval/test split, shared by ingest and the data generator.

A stable hash of each raw row (or of one key column) picks the split, never a random draw: the
same row always lands in the same split, duplicates cannot leak between train and test, and
adding rows to a span does not move the old ones. The generator imports it so that its
feature_skew shift can put a transformation in the eval split only (known truth for skew tests);
DVC's generate stage depends on this file for that reason.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel import names
from flywheel.errors import DataError


def assign_splits(df: pd.DataFrame, split_key: str = "", buckets: tuple[int, ...] = (80, 10, 10),
                  source: str = "<input>") -> np.ndarray:
    """names.TRAIN/EVAL/TEST per row, from a stable hash of the row (or of `split_key`)."""
    if len(buckets) != len(names.SPLITS) or sum(buckets) != 100 or min(buckets) < 0:
        raise ValueError(f"ingest.split_buckets must be three percentages summing to 100, not {list(buckets)}")
    if split_key and split_key not in df.columns:
        raise DataError(source, f"the split key column is missing; the columns are {list(df.columns)}",
                        column=split_key, hint='Set ingest.split_key in params.yaml to an existing column, or "".')
    # pandas' hash uses a fixed key, so the value is the same in every process and on every machine.
    hashed = pd.util.hash_pandas_object(df[split_key] if split_key else df, index=False).to_numpy()
    bucket = hashed % np.uint64(100)
    edges = np.cumsum(buckets)
    return np.array(names.SPLITS, dtype=object)[np.searchsorted(edges, bucket, side="right")]
