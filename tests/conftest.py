"""Fixtures every test folder may use (pytest finds this file; nothing imports it).

Model versions made by the pipeline's own steps (tests/support/bundles.py: train, evaluate, push on
generated taxi-like rows), so every bundle the serving, monitoring and container tests serve is
exactly what the push step writes. Two versions are trained once per session (different data);
tests copy them into repositories of their own.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.support.bundles import train_versions
from tests.support.servers import MODEL_NAME
from tests.support.taxi_rows import LABEL, make_frame


@pytest.fixture(scope="session")
def train_frame() -> pd.DataFrame:
    return make_frame(3000, seed=1)


@pytest.fixture(scope="session")
def exported_versions(tmp_path_factory, train_frame) -> dict[int, Path]:
    """Two versions trained and pushed by the pipeline's steps, once per session."""
    return train_versions(tmp_path_factory.mktemp("exported"), [train_frame, make_frame(3000, seed=22)],
                          MODEL_NAME, LABEL, **{"evaluate.slice_features": ["payment_type"]})


# --- time per test folder, printed at the end of every run ---------------------------------------
_seconds: dict[str, float] = {}
_counts: dict[str, int] = {}


def pytest_runtest_logreport(report):
    """Setup, call and teardown of every test, added to its folder (tests/<folder>/...)."""
    parts = Path(str(report.fspath)).parts
    folder = parts[parts.index("tests") + 1] if "tests" in parts and parts[-1] != parts[parts.index("tests") + 1] \
        else "tests"
    _seconds[folder] = _seconds.get(folder, 0.0) + report.duration
    if report.when == "call":
        _counts[folder] = _counts.get(folder, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    terminalreporter.write_sep("-", "time per test folder (setup + tests, this run)")
    for folder, seconds in sorted(_seconds.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"  {folder:<16} {seconds / 60:5.1f} min  {_counts.get(folder, 0):4d} tests")
    terminalreporter.write_line(f"  {'all':<16} {sum(_seconds.values()) / 60:5.1f} min")
