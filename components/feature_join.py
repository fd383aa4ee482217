"""Ingest's option `ingest.features`: the span built from the feature store by a point-in-time
join. The table read is entities and labels; each row gets the feature service's values as they
were at its `ingest.feature_timestamp`, never a value stamped later (featurestore/join.py).

Feast cannot share this process (it needs numpy>=2 and pyarrow>=16, TFDV numpy 1.26 and pyarrow
10), so the join runs as `python -m featurestore join` in the feature store's environment, on a
Parquet copy of the table in a temporary folder; its output replaces the table in memory. The
lineage (the feature service, each feature view and its version) goes in ingest's metadata."""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from flywheel.errors import DataError
from flywheel.params import ROOT, IngestParams


def _under_root(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else ROOT / path


def join(df: pd.DataFrame, params: IngestParams, source: str) -> tuple[pd.DataFrame, dict]:
    """`df` with the feature service's columns added as of each row's timestamp, and the lineage."""
    python = _under_root(params.feast_python)
    if not python.exists():
        raise DataError(source, f"ingest.features needs the feature store's environment: {python} does not exist",
                        hint="Build it with `make feast`, and register the features with `make feast-apply`.")
    if params.feature_timestamp not in df.columns:
        raise DataError(source, f"the timestamp column '{params.feature_timestamp}' is missing; the columns are "
                        f"{list(df.columns)}", column=params.feature_timestamp,
                        hint="Name it with ingest.feature_timestamp in params.yaml.")
    with tempfile.TemporaryDirectory(prefix="flywheel-features-") as tmp:
        entities, out, lineage = Path(tmp) / "entities.parquet", Path(tmp) / "joined.parquet", Path(tmp) / "lineage.json"
        df.to_parquet(entities, index=False)
        done = subprocess.run([str(python), "-m", "featurestore", "join", "--entities", str(entities),
                               "--timestamp-column", params.feature_timestamp, "--out", str(out),
                               "--lineage", str(lineage), "--repo", str(_under_root(params.feature_repo))], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise DataError(source, "the point-in-time join failed: " + (lines[-1] if lines else f"exit {done.returncode}"))
        return pd.read_parquet(out), json.loads(lineage.read_text())
