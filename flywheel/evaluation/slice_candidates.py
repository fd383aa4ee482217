"""Columns of a user's table that could be fairness slices, when none of the configured ones exist.

A candidate is a column whose values make groups large enough to judge: a boolean, or a
categorical (or small-integer code) with 2 to `max_slices` values of which at least two have
`min_slice_rows` rows in the test split. Evaluate proposes them from the test split when none of
`evaluate.slice_features` exist; the data card from the training statistics, scaled to the
test split's size. Names that often mark a protected group (sex, race, age, ...) come first.
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


def candidate(column: str, counts: dict, kind: str, max_slices: int, min_rows: float) -> dict | None:
    """{column, why, protected} when the column's value counts make a slice grouping, else None.
    `kind` says what the column is ("boolean", "categorical", "integer code")."""
    judged = sum(1 for n in counts.values() if n >= min_rows)
    if not 2 <= len(counts) <= max_slices or judged < 2:
        return None
    protected = bool(PROTECTED.search(str(column)))
    why = (f"{kind} with {len(counts)} values, {judged} of them with at least {min_rows:.0f} test rows"
           + ("; its name suggests a protected group" if protected else ""))
    return {"column": str(column), "why": why, "protected": protected}


def ranked(found: list[dict]) -> list[dict]:
    """Protected-sounding names first, at most MOST."""
    return sorted(found, key=lambda c: not c["protected"])[:MOST]


def propose(frame: pd.DataFrame, exclude=(), max_slices: int = 20, min_slice_rows: int = 30) -> list[dict]:
    """Candidates among the frame's columns (the test split: its counts are what slices get)."""
    found = []
    for column in frame.columns:
        values = frame[column].dropna()
        if column in exclude or values.nunique() > max_slices:
            continue
        if pd.api.types.is_bool_dtype(values):
            kind = "boolean"
        elif pd.api.types.is_integer_dtype(values) and values.nunique() <= 10:
            kind = "integer code"
        elif pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values) \
                or isinstance(values.dtype, pd.CategoricalDtype):
            kind = "categorical"
        else:
            continue
        found.append(candidate(column, values.value_counts().to_dict(), kind, max_slices, min_slice_rows))
    return ranked([c for c in found if c])


def setting(candidates: list[dict]) -> str:
    """The `SET=` value that slices on the candidates (pipelines/cli.py reads the list as JSON)."""
    return "evaluate.slice_features=" + json.dumps([c["column"] for c in candidates], separators=(",", ":"))
