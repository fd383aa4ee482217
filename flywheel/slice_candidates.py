"""Columns of a user's table that could be fairness slices, when none of the configured ones exist.

A candidate is a column whose values make groups large enough to judge: a boolean, or a
categorical (or small-integer code) with 2 to `max_slices` values of which at least two have
`min_slice_rows` rows. Names that often mark a protected group (sex, race, age, ...) come first.
Each candidate says why it was proposed; `setting` is the exact `SET=` that slices on them.
"""
from __future__ import annotations

import json
import re

import pandas as pd

# Words in a column name that often mark a protected or sensitive group.
PROTECTED = re.compile(r"sex|gender|race|ethnic|age\b|age_|religio|disab|national|marital|minority|protected|group",
                       re.IGNORECASE)
MOST = 5            # candidates named, at most


def propose(frame: pd.DataFrame, exclude=(), max_slices: int = 20, min_slice_rows: int = 30) -> list[dict]:
    """[{column, why}] for the frame's columns that could be slices, protected-sounding names first."""
    found = []
    for column in frame.columns:
        if column in exclude:
            continue
        values = frame[column].dropna()
        distinct = values.nunique()
        if not 2 <= distinct <= max_slices:
            continue
        counts = values.value_counts()
        if (counts >= min_slice_rows).sum() < 2:
            continue
        if pd.api.types.is_bool_dtype(values):
            kind = "boolean"
        elif pd.api.types.is_integer_dtype(values) and distinct <= 10:
            kind = f"integer code with {distinct} values"
        elif pd.api.types.is_object_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype) \
                or pd.api.types.is_string_dtype(values):
            kind = f"categorical with {distinct} values"
        else:
            continue
        judged = int((counts >= min_slice_rows).sum())
        why = f"{kind}, {judged} of them with at least {min_slice_rows} test rows"
        if PROTECTED.search(str(column)):
            why += "; its name suggests a protected group"
        found.append({"column": str(column), "why": why, "protected": bool(PROTECTED.search(str(column)))})
    found.sort(key=lambda c: not c["protected"])
    return found[:MOST]


def setting(candidates: list[dict]) -> str:
    """The `SET=` value that slices on the candidates (pipelines/cli.py reads the list as JSON)."""
    return "evaluate.slice_features=" + json.dumps([c["column"] for c in candidates], separators=(",", ":"))
