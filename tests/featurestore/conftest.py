"""One feature store for the folder's tests (built once: three Feast processes, about a minute)."""
from __future__ import annotations

import pytest

from tests.support.featurestore import make_store


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """(the repository, the spans folder): two spans of 2,000 rows, applied and materialised."""
    return make_store(tmp_path_factory.mktemp("featurestore"))
