"""Shared fixtures for serving and monitoring tests: a model repository whose versions were made
by the pipeline's own steps (tests/support/bundles.py: train, evaluate, push on generated taxi-like
rows), so every bundle served here is exactly what the push step writes.

Two versions are trained once per session (different data) and copied into a fresh repository
per test, so tests can push version 2 while version 1 is served.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.support.bundles import train_versions
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, SidecarThread, push_version, start_dev_server
from tests.support.taxi_rows import LABEL, make_frame

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def train_frame() -> pd.DataFrame:
    return make_frame(3000, seed=1)


@pytest.fixture(scope="session")
def exported_versions(tmp_path_factory, train_frame) -> dict[int, Path]:
    """Two versions trained and pushed by the pipeline's steps, once per session."""
    return train_versions(tmp_path_factory.mktemp("exported"), [train_frame, make_frame(3000, seed=22)],
                          MODEL_NAME, LABEL, **{"evaluate.slice_feature": "payment_type"})


@pytest.fixture
def model_repository(tmp_path, exported_versions) -> Path:
    """A model repository with version 1 of MODEL_NAME pushed."""
    repository = tmp_path / "model_repository"
    push_version(exported_versions, repository, 1)
    return repository


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory, exported_versions):
    """One dev model server per test module, serving version 1 (tests must not push to it)."""
    root = tmp_path_factory.mktemp("served")
    push_version(exported_versions, root / "model_repository", 1)
    server = start_dev_server(root / "model_repository", root)
    yield server
    server.stop()


@pytest.fixture
def sidecar_factory(tmp_path):
    """start(upstream_url, repository, **config overrides) -> SidecarThread; all stopped at teardown."""
    from monitoring.config import SidecarConfig
    started = []

    def start(upstream: str, repository: Path, writer=None, **overrides) -> SidecarThread:
        config = SidecarConfig(upstream=upstream, model_repository=str(repository), model_name=MODEL_NAME,
                               port=free_port(), log_dir=str(tmp_path / f"log{len(started)}"),
                               version_poll_s=0.2, **overrides)
        sidecar = SidecarThread(config, writer=writer)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()
