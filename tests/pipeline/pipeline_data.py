"""Small examples and a real TFDV schema for the train / evaluate / push tests.

The examples are written in the layout ingest produces (<dir>/<split>/data.parquet) and the
schema is inferred by TFDV from real statistics, so the steps see exactly what the pipeline
hands them.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from flywheel import names


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
    """80/10/10 split by row position (the fixture's rows are already random)."""
    n = len(frame)
    bounds = {names.TRAIN: (0, int(0.8 * n)), names.EVAL: (int(0.8 * n), int(0.9 * n)), names.TEST: (int(0.9 * n), n)}
    for split, (lo, hi) in bounds.items():
        os.makedirs(os.path.join(directory, split), exist_ok=True)
        frame.iloc[lo:hi].to_parquet(os.path.join(directory, split, names.SPLIT_FILE), index=False)
    return directory


def write_statistics_and_schema(examples_dir: str, out_dir: str, label: str = "label") -> tuple[str, str]:
    import tensorflow_data_validation as tfdv

    stats_dir = os.path.join(out_dir, "statistics")
    for split in names.SPLITS:
        frame = pd.read_parquet(os.path.join(examples_dir, split, names.SPLIT_FILE))
        stats = tfdv.generate_statistics_from_dataframe(frame)
        os.makedirs(os.path.join(stats_dir, split), exist_ok=True)
        with open(os.path.join(stats_dir, split, names.STATS_FILE), "wb") as f:
            f.write(stats.SerializeToString())
        if split == names.TRAIN:
            schema = tfdv.infer_schema(stats)
    schema.default_environment.extend([names.ENV_TRAINING, names.ENV_SERVING])
    tfdv.get_feature(schema, label).not_in_environment.append(names.ENV_SERVING)
    schema_path = os.path.join(out_dir, names.SCHEMA_FILE)
    tfdv.write_schema_text(schema, schema_path)
    return stats_dir, schema_path


