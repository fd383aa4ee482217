"""Spans of the default generated dataset (tools/datagen.py) for the data-step tests."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from flywheel import params
from flywheel.params import DataParams, Shift
from tools import datagen

LABEL = datagen.LABEL
CURATED = params.ROOT / params.SchemaParams().curated
SETTINGS = params.load()
PYTHON = sys.executable


def write_span(directory: Path, df: pd.DataFrame, name: str = "span.csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    df.to_csv(path, index=False)
    return path


def span(n: int, shifts: tuple[Shift, ...] = (), rows: int = 5000) -> pd.DataFrame:
    return datagen.generate_span(DataParams(rows_per_span=rows, shifts=shifts), n)
