"""Fixtures for the train / evaluate / push steps (helpers in pipeline_data.py)."""
import pytest

from tests.pipeline.pipeline_data import make_frame, write_examples, write_statistics_and_schema


@pytest.fixture(scope="session")
def binary_workspace(tmp_path_factory):
    """Examples, statistics and schema for a learnable binary task, shared by the module's tests."""
    root = tmp_path_factory.mktemp("binary")
    examples = write_examples(str(root / "examples"), make_frame(3000, seed=1))
    stats_dir, schema_path = write_statistics_and_schema(examples, str(root))
    return {"root": root, "examples": examples, "statistics": stats_dir, "schema": schema_path}
