"""The browser tests: one headless Chromium for the module, and where screenshots are kept.

Screenshots are test artifacts: build/test-artifacts/browser/ (or $FLYWHEEL_TEST_ARTIFACTS/browser/).
Without Debian's chromium the tests are skipped with that reason; `make test` installs it.
"""
import os
from pathlib import Path

import pytest

from flywheel.params import ROOT
from tests.support.browser import Browser, executable


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if executable() is None:
        pytest.skip("chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)")
    with Browser(tmp_path_factory.mktemp("chromium")) as running:
        yield running


@pytest.fixture(scope="session")
def screenshots() -> Path:
    out = Path(os.environ.get("FLYWHEEL_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts") / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out
