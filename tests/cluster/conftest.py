"""Fixtures for the cluster checks: rendered overlays from the real `kubectl kustomize`.

Everything here runs the real tools (kubectl kustomize, promtool, checkov, prometheus) on the
committed files; nothing is mocked. A missing tool is a failure with its install hint, not a skip.
"""
from __future__ import annotations

import pytest

from tests.support.cluster import MANIFESTS, OVERLAYS, kustomize_build


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """overlay name -> list of rendered objects."""
    return {name: kustomize_build(MANIFESTS / "overlays" / name) for name in OVERLAYS}
