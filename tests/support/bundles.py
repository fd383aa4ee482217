"""Model versions made by the pipeline's own steps, for the serving and monitoring tests.

Each frame goes through the in-process chain of the real steps (ingest, statistics, schema,
validate, train, evaluate, push: pipelines/chain.py), so every bundle a test serves is exactly
what the push step writes: no hand-built SavedModel or assets.extra.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from flywheel import model_repository, params
from pipelines import chain


def settings(repository: Path, model_name: str, label: str, **overrides) -> params.Params:
    """params.yaml's settings for a user's table: inferred schema, no PII, a quick training."""
    values = {"push.model_repository": str(repository), "push.model_name": model_name, "ingest.label": label,
              "ingest.pii_columns": [], "schema.curated": "", "train.epochs": 4,
              "evaluate.allowed_regression": 1.0, **overrides}
    return params.override(params.load(), values)


def train_versions(root: Path, frames: list[pd.DataFrame], model_name: str, label: str,
                   **overrides) -> dict[int, Path]:
    """Push one version per frame into root/repository; returns version -> its directory."""
    repository = root / "repository"
    root.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        data = root / f"span-{i}.csv"
        frame.to_csv(data, index=False)
        result = chain.run(str(data), root / f"run-{i}", settings(repository, model_name, label, **overrides),
                           force=True, run_id=f"fixture-{i}").results["push"]
        assert result.pushed, result.reason
    return {v: Path(model_repository.version_dir(str(repository), model_name, v))
            for v in model_repository.versions(str(repository), model_name)}
