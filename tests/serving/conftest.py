"""Fixtures for the serving and monitoring tests: a fresh model repository per test with version 1
of the session's trained versions (tests/conftest.py) pushed, a development model server, sidecars."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, SidecarThread, push_version, start_dev_server

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    """start(upstream_url, repository, **settings) -> SidecarThread; all stopped at teardown.
    Settings name SidecarConfig fields or params.yaml `monitoring:` keys; each sidecar gets its
    own pod name, log directory and log destination unless told otherwise."""
    from monitoring.config import SidecarConfig
    started = []

    def start(upstream: str, repository: Path, **settings) -> SidecarThread:
        n = len(started)
        values = {"upstream": upstream, "model_repository": str(repository), "model_name": MODEL_NAME,
                  "port": free_port(), "pod": f"pod{n}", "log_dir": str(tmp_path / f"log{n}"),
                  "log_destination": str(tmp_path / "logs"), "version_poll_s": 0.2, "linger_s": 0.01,
                  "feedback_poll_s": 0.2, "fleet_interval_s": 0.5, **settings}
        sidecar = SidecarThread(SidecarConfig.from_params(**values))
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()
