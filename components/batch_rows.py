"""Which rows of a batch cannot be scored as the model was trained, and why (batch scoring).

A row is bad when a feature the model takes holds text where the schema says number, a number
outside the schema's int/float domain, or nothing where the schema requires a value (presence
min_fraction 1), or when its key is missing. Other departures from the schema (a category
outside its domain, a share of missing values) are scored, as the online model would score them,
and reported by the SERVING-environment anomalies instead. Rows are checked a record batch at a
time with column operations; the listed problems are bounded by the caller.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel.schema_view import FLOAT, INT, Feature

NOT_A_NUMBER = "not a number"
OUT_OF_DOMAIN = "outside the schema's domain"
MISSING = "missing (the schema requires a value)"
KEY_MISSING = "key missing"


def required(schema) -> set[str]:
    """Features the schema says are present in every row (presence.min_fraction 1)."""
    return {f.name for f in schema.feature if f.HasField("presence") and f.presence.min_fraction >= 1.0}


def keys_of(column: pd.Series) -> pd.Series:
    """A key column as text; integral floats (an integer column with a gap reads as float) lose
    their ".0", so a key sent as 123 finds the row read as 123.0."""
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy()
        finite = np.isfinite(values)
        if np.all(np.mod(values[finite], 1) == 0):
            return column.astype("Int64").astype("string")
    return column.astype("string")


def numeric(column: pd.Series) -> pd.Series:
    """A feature column as numbers (text that does not parse becomes NaN)."""
    return column if pd.api.types.is_numeric_dtype(column) else pd.to_numeric(column, errors="coerce")


def check(frame: pd.DataFrame, features: list[Feature], required_features: set[str],
          key_column: str = "") -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """(bad: a boolean mask of the frame's rows, problems: [(position in the frame, column,
    reason)]), every problem of every bad row, in column order."""
    bad = np.zeros(len(frame), dtype=bool)
    problems: list[tuple[int, str, str]] = []

    def flag(mask: np.ndarray, column: str, reason: str) -> None:
        nonlocal bad
        if mask.any():
            bad |= mask
            problems.extend((int(i), column, reason) for i in np.flatnonzero(mask))

    if key_column:
        flag(frame[key_column].isna().to_numpy(), key_column, KEY_MISSING)
    for feature in features:
        column = frame[feature.name]
        present = column.notna().to_numpy()
        if feature.name in required_features:
            flag(~present, feature.name, MISSING)
        if feature.kind not in (FLOAT, INT):
            continue
        values = numeric(column).to_numpy(dtype=float, na_value=np.nan)
        flag(present & np.isnan(values), feature.name, NOT_A_NUMBER)
        with np.errstate(invalid="ignore"):
            outside = np.zeros(len(frame), dtype=bool)
            if feature.minimum is not None:
                outside |= values < feature.minimum
            if feature.maximum is not None:
                outside |= values > feature.maximum
        flag(outside, feature.name, OUT_OF_DOMAIN)
    return bad, problems

