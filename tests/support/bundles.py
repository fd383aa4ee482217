"""Model versions made by the pipeline's own steps, for the serving and monitoring tests.

Each frame goes through the in-process chain of the real steps (ingest, statistics, schema,
validate, train, evaluate, push: pipelines/chain.py), so every bundle a test serves is exactly
what the push step writes: no hand-built SavedModel or assets.extra.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from flywheel import model_repository, names, params
from pipelines import chain


def settings(repository: Path, model_name: str, label: str, **overrides) -> params.Params:
    """params.yaml's settings for a user's table: inferred schema, no PII, a quick training."""
    values = {"push.model_repository": str(repository), "push.model_name": model_name, "ingest.label": label,
              "ingest.pii_columns": [], "schema.curated": "", "train.epochs": 4, "train.min_steps": 0,
              # Versions the serving tests serve, not candidates under test: the blessing's gates
              # (production, baselines, fairness) have their own tests, so none refuses them here.
              "evaluate.allowed_regression": 1.0, "evaluate.baselines_gate": False, "evaluate.max_slice_gap": 1.0, "evaluate.min_slice_auc": 0.0,
              "evaluate.slice_allowed_regression": 1.0,
              # Nor is the trust in their performance estimate under test here (that is
              # tests/pipeline/test_performance_estimation.py): on ~270 test rows the realised
              # accuracy alone moves by +-0.05, so the default bound can distrust a sound version.
              "evaluate.max_estimate_error": 0.05,
              # The network only: the release tests compare versions trained from other seeds, which
              # the deterministic linear family would make identical (tests/pipeline covers the families).
              "train.families": ["wide_deep"], **overrides}
    return params.override(params.load(), values)


def train_versions(root: Path, frames: list[pd.DataFrame], model_name: str, label: str,
                   **overrides) -> dict[int, Path]:
    """Push one version per frame into root/repository; returns version -> its directory."""
    repository = root / "repository"
    root.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        data = root / f"span-{i}.csv"
        frame.to_csv(data, index=False)
        # Infra validation (tests/pipeline/test_infra_validate.py) would start a model server per
        # version here (~25 s each); these versions are served by the tests themselves.
        result = chain.run(str(data), root / f"run-{i}", settings(repository, model_name, label, **overrides),
                           force=True, run_id=f"fixture-{i}", skip=("infra_validate",)).results["push"]
        assert result.pushed, result.reason
    return {v: Path(model_repository.version_dir(str(repository), model_name, v))
            for v in model_repository.versions(str(repository), model_name)}


def write_model_repository(root: Path) -> Path:
    """A repository holding one version of the default model, trained by the pipeline's steps on
    3,000 rows of taxi-like data; returns the repository path."""
    from tests.support.taxi_rows import LABEL, make_frame
    versions = train_versions(root, [make_frame(3000, seed=1)], names.DEFAULT_MODEL_NAME, LABEL)
    return versions[1].parent.parent
