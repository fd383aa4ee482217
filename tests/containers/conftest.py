"""Container tests: the images as built here by docker/build.py (`make images`), run with the
local Docker engine. `make test` provides the engine (docker/engine.sh installs and starts one);
without a daemon these tests skip with the reason. Containers use the default bridge (or share
another container's network namespace, as a pod does); published ports bind 127.0.0.1 only;
nothing is pushed anywhere.

The session's first container test builds the images (seconds when nothing changed, minutes on a
fresh machine), so these tests get a longer timeout than the suite's default; the time they add
to the run is printed at the end.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel import names
from tests.support.containers import ROOT, docker_client_or_skip, remove_labelled

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 2400  # covers a cold build: debootstrap, wheelhouse download, TensorFlow environment
_spent = {"build": 0.0, "tests": 0.0}
_build_output: list[str] = []  # docker/build.py's report (sizes), printed at the end of the run


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(TIMEOUT_S))


def pytest_runtest_logreport(report):
    if HERE in (ROOT / report.fspath).resolve().parents:
        _spent["tests"] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _spent["tests"]:
        return
    for line in _build_output:
        terminalreporter.write_line(line)
    engine = float(os.environ.get("FLYWHEEL_ENGINE_SECONDS", 0))
    total = engine + _spent["tests"]
    terminalreporter.write_line(
        f"containers: {total / 60:.1f} min added to this run (engine {engine:.0f} s, images {_spent['build']:.0f} s, "
        f"container tests {_spent['tests'] - _spent['build']:.0f} s)")


@pytest.fixture(scope="session")
def docker_client():
    client = docker_client_or_skip()
    yield client
    remove_labelled(client)
    client.close()


@pytest.fixture(scope="session")
def images(docker_client) -> dict[str, str]:
    """Build (or refresh: cached layers make that seconds) the component and sidecar images."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "docker" / "build.py"), "component", "sidecar"],
                            cwd=ROOT, capture_output=True, text=True)
    _spent["build"] = time.monotonic() - started
    assert result.returncode == 0, f"docker/build.py failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    _build_output.extend(result.stdout.splitlines())
    return {"component": names.COMPONENT_IMAGE, "sidecar": names.SIDECAR_IMAGE}
