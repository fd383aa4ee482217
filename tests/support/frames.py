"""Small learnable tables (binary, multiclass, regression) for the train / evaluate / push tests,
and the pipeline's own first steps run on them (pipelines/chain.py), so those steps see exactly
what the pipeline hands them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flywheel import artifacts, names, params
from pipelines import chain


def make_frame(rows: int, seed: int, task: str = names.BINARY, shuffle_label: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "distance": rng.gamma(2.0, 2.0, rows).astype(float),
        "passengers": rng.integers(1, 5, rows),
        "payment": rng.choice(["card", "cash", "mobile"], rows, p=[0.5, 0.3, 0.2]),
        "start_time": 1767600000 + rng.integers(0, 7 * 86400, rows),
    })
    frame.loc[rng.random(rows) < 0.03, "distance"] = np.nan
    signal = (0.6 * np.nan_to_num(frame["distance"], nan=4.0) - 2.4 + 1.5 * (frame["payment"] == "card")
              - 1.2 * (frame["payment"] == "cash"))
    if task == names.BINARY:
        label = (rng.random(rows) < 1 / (1 + np.exp(-signal))).astype(int)
    elif task == names.MULTICLASS:
        label = np.digitize(signal + rng.normal(0, 0.5, rows), [-1.0, 1.0])
        label = np.array(["low", "mid", "high"])[label]
    else:
        label = signal + rng.normal(0, 0.3, rows)
    frame["label"] = rng.permutation(label) if shuffle_label else label
    return frame


def write_examples(directory: str, frame: pd.DataFrame) -> str:
    """A frame laid out as ingest writes examples (80/10/10 by row position; the rows are already
    random), for tests that hand a step data ingest would refuse."""
    n = len(frame)
    bounds = {names.TRAIN: (0, int(0.8 * n)), names.EVAL: (int(0.8 * n), int(0.9 * n)), names.TEST: (int(0.9 * n), n)}
    for split, (lo, hi) in bounds.items():
        path = artifacts.split_file(directory, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.iloc[lo:hi].to_parquet(path, index=False)
    return directory


def workspace(root: Path, frame: pd.DataFrame, label: str = "label", **settings) -> dict:
    """The frame through the pipeline's first steps (ingest, statistics, schema inferred), as the
    train, evaluate and push steps receive it: {"root", "examples", "statistics", "schema", "params"}."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data.csv"
    frame.to_csv(data, index=False)
    chosen = params.override(params.load(), {"ingest.label": label, "ingest.pii_columns": [], "schema.curated": "",
                                             "push.model_repository": str(root / "repository"), **settings})
    run = chain.run(str(data), root, chosen, until="schema")
    return {"root": root, "examples": str(run.examples), "statistics": str(run.statistics), "schema": str(run.schema),
            "params": chosen}
