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


# pandas' hash of a missing value in a column it factorizes (pandas.core.util.hashing).
_MISSING_HASH = np.uint64(np.iinfo(np.uint64).max)


def column_hash(values: np.ndarray) -> np.ndarray:
    """pandas.util.hash_array(values) (categorize=True). pandas factorizes a text column and
    hashes each distinct value once, which is slow for a column of unique values (e-mails,
    ids): those are hashed value by value (categorize=False gives each string the same hash, 4x
    faster there), with pandas' hash for a missing value."""
    if values.dtype == object and len(values) > 1000 and len(set(values[:1000].tolist())) > 500 \
            and pd.api.types.infer_dtype(values, skipna=True) == "string":
        missing = pd.isna(values)
        if missing.any():
            values = np.where(missing, "", values)
        hashed = pd.util.hash_array(values, categorize=False)
        hashed[missing] = _MISSING_HASH
        return hashed
    return pd.util.hash_array(values)


def row_hashes(df: pd.DataFrame) -> np.ndarray:
    """pandas.util.hash_pandas_object(df, index=False) as uint64, faster (see _column_hash)."""
    return hash_columns([df.iloc[:, i].to_numpy() for i in range(df.shape[1])])


def hash_columns(columns: list[np.ndarray]) -> np.ndarray:
    """The row hashes of a table given as its columns (numpy arrays with pandas' dtypes: int64,
    float64 with NaN, object with None). A row's hash depends only on its values and the
    columns' dtypes, so a table hashed in record batches gets the values it gets hashed whole,
    when every batch has the whole table's dtypes (components/tables.py sees to that). pandas'
    hash uses a fixed key: the value is the same in every process and on every machine."""
    n_columns = len(columns)
    out = np.full(len(columns[0]) if columns else 0, 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    for i, values in enumerate(columns):   # pandas.core.util.hashing.combine_hash_arrays
        out ^= column_hash(values)
        out *= mult
        mult += np.uint64(82520 + 2 * (n_columns - i))
    return out + np.uint64(97531)


def split_names(hashed: np.ndarray, buckets: tuple[int, ...]) -> np.ndarray:
    """names.TRAIN/EVAL/TEST from row hashes: the hash modulo 100 against the cumulative buckets."""
    edges = np.cumsum(buckets)
    return np.array(names.SPLITS, dtype=object)[np.searchsorted(edges, hashed % np.uint64(100), side="right")]


def check_buckets(buckets: tuple[int, ...]) -> None:
    if len(buckets) != len(names.SPLITS) or sum(buckets) != 100 or min(buckets) < 0:
        raise ValueError(f"ingest.split_buckets must be three percentages summing to 100, not {list(buckets)}")


def assign_splits(df: pd.DataFrame, split_key: str = "", buckets: tuple[int, ...] = (80, 10, 10),
                  source: str = "<input>") -> np.ndarray:
    """names.TRAIN/EVAL/TEST per row, from a stable hash of the row (or of `split_key`)."""
    check_buckets(buckets)
    if split_key and split_key not in df.columns:
        raise DataError(source, f"the split key column is missing; the columns are {list(df.columns)}",
                        column=split_key, hint='Set ingest.split_key in params.yaml to an existing column, or "".')
    hashed = column_hash(df[split_key].to_numpy()) if split_key else row_hashes(df)
    return split_names(hashed, buckets)
