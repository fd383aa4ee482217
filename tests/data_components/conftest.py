"""Shared fixtures of the data-component tests: generated spans, a step runner, KFP artifacts.

Spans are generated once per session at the default size (5000 rows): the drift and skew
thresholds in params.yaml were chosen against the noise of spans that size.
"""
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from components import ingest, schema, statistics, validate  # noqa: E402
from flywheel import datagen, names, params  # noqa: E402
from flywheel.params import DataParams, Shift  # noqa: E402

LABEL = datagen.LABEL
CURATED = params.ROOT / "pipelines" / "schema" / "schema.pbtxt"
SETTINGS = params.load()
THRESHOLDS = validate.Thresholds(SETTINGS.validate.drift_linf, SETTINGS.validate.drift_jsd,
                                 SETTINGS.validate.skew_linf, SETTINGS.validate.skew_jsd)
PYTHON = sys.executable


def write_span(directory: Path, df: pd.DataFrame, name: str = "span.csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    df.to_csv(path, index=False)
    return path


def span(n: int, shifts: tuple[Shift, ...] = (), rows: int = 5000) -> pd.DataFrame:
    return datagen.generate_span(DataParams(rows_per_span=rows, shifts=shifts), n)


class Steps:
    """Runs the four plain step functions the way the pipeline chains them, in one folder."""

    def __init__(self, root: Path):
        self.root = root

    def prepare(self, data: Path, name: str, schema_path: Path | None = CURATED) -> Path:
        ingest.run(str(data), self.root / name / "examples", LABEL)
        statistics.run(self.root / name / "examples", self.root / name / "statistics", schema_path=schema_path)
        return self.root / name / "statistics"

    def validate(self, current: Path, baseline: Path | None = None, schema_path: Path | None = CURATED,
                 schema_from: Path | None = None, **kwargs) -> list[dict]:
        schema.run(schema_from or current, self.root / "schema", LABEL, schema_path)
        return validate.run(current, self.root / "schema", self.root / "anomalies",
                            baseline_stats=str(statistics.stats_path(baseline, names.TRAIN)) if baseline else None,
                            thresholds=THRESHOLDS, source=str(current), **kwargs)


@pytest.fixture
def steps(tmp_path) -> Steps:
    return Steps(tmp_path)


@pytest.fixture(scope="session")
def clean_spans(tmp_path_factory) -> list[Path]:
    """Spans 1-3 of the default parameters, no shifts."""
    out = tmp_path_factory.mktemp("spans")
    return datagen.write_spans(DataParams(), out)


@pytest.fixture(scope="session")
def clean_stats(tmp_path_factory, clean_spans) -> list[Path]:
    """Statistics (curated schema) of the clean spans, computed once."""
    runner = Steps(tmp_path_factory.mktemp("clean"))
    return [runner.prepare(path, f"span{i}") for i, path in enumerate(clean_spans, start=1)]


@pytest.fixture
def artifact(tmp_path):
    """KFP artifacts for calling a component's `python_func` directly (STYLE.md #7).

    The one quirk kept here: a KFP artifact's `.path` is derived from its `uri` (gs://b/x ->
    /gcs/b/x; a plain local path stays as is), and the components treat `.path` as a
    directory they create (an HTML artifact's path is a file). So a local uri under tmp_path
    is all an artifact needs; `metadata` starts empty, as the KFP executor passes it."""
    from kfp import dsl

    def make(cls=dsl.Artifact, name: str = "artifact", metadata: dict | None = None):
        return cls(name=name, uri=str(tmp_path / "artifacts" / name), metadata=dict(metadata or {}))

    return make
