"""Fixtures for the train / evaluate / push steps (tables in tests/support/frames.py)."""
import pytest

from tests.support.frames import make_frame, workspace


@pytest.fixture(scope="session")
def binary_workspace(tmp_path_factory):
    """Examples, statistics and schema for a learnable binary task, shared by the module's tests."""
    return workspace(tmp_path_factory.mktemp("binary"), make_frame(3000, seed=1))
