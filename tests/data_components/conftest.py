"""Shared fixtures of the data-step tests: generated spans, the steps chained, KFP artifacts.

Spans are generated once per session at the default size (5000 rows): the drift and skew
thresholds in params.yaml were chosen against the noise of spans that size.
"""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from components import schema, validate  # noqa: E402
from flywheel import artifacts, names, params  # noqa: E402
from flywheel.params import DataParams  # noqa: E402
from tools import datagen  # noqa: E402
from pipelines import chain  # noqa: E402
from tests.support.spans import CURATED, LABEL, SETTINGS  # noqa: E402


class Steps:
    """The pipeline's steps on test spans: ingest and statistics through the in-process chain,
    then schema and validate on statistics computed once per session."""

    def __init__(self, root: Path):
        self.root = root

    def prepare(self, data: Path, name: str, schema_path: Path | None = CURATED) -> Path:
        settings = params.override(SETTINGS, {"schema.curated": str(schema_path or "")})
        return chain.run(str(data), self.root / name, settings, until="statistics").statistics

    def validate(self, current: Path, baseline: Path | None = None, schema_path: Path | None = CURATED,
                 schema_from: Path | None = None, settings: params.ValidateParams = SETTINGS.validate) -> list[dict]:
        schema.run(schema_from or current, self.root / "schema", LABEL, schema_path)
        return validate.run(current, self.root / "schema", self.root / "anomalies",
                            baseline_stats=str(artifacts.stats_file(baseline, names.TRAIN)) if baseline else None,
                            params=settings, source=str(current), examples_dir=current.parent / "examples",
                            drift_params=SETTINGS.drift, label=LABEL)


@pytest.fixture
def steps(tmp_path) -> Steps:
    return Steps(tmp_path)


@pytest.fixture(scope="session")
def clean_spans(tmp_path_factory) -> list[Path]:
    """Spans 1-3 of the default parameters, without the default drift of span 3."""
    out = tmp_path_factory.mktemp("spans")
    return datagen.write_spans(DataParams(shifts=()), out)


@pytest.fixture(scope="session")
def clean_stats(tmp_path_factory, clean_spans) -> list[Path]:
    """Statistics (curated schema) of the clean spans, computed once."""
    runner = Steps(tmp_path_factory.mktemp("clean"))
    return [runner.prepare(path, f"span{i}") for i, path in enumerate(clean_spans, start=1)]


@pytest.fixture
def artifact(tmp_path):
    """KFP artifacts for calling a component's `python_func` directly.

    The one quirk kept here: a KFP artifact's `.path` is derived from its `uri` (gs://b/x ->
    /gcs/b/x; a plain local path stays as is), and the components treat `.path` as a
    directory they create (an HTML artifact's path is a file). So a local uri under tmp_path
    is all an artifact needs; `metadata` starts empty, as the KFP executor passes it."""
    from kfp import dsl

    def make(cls=dsl.Artifact, name: str = "artifact", metadata: dict | None = None):
        return cls(name=name, uri=str(tmp_path / "artifacts" / name), metadata=dict(metadata or {}))

    return make
