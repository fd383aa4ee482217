"""The KFP wrappers, called through `component.python_func` with real artifacts (conftest
`artifact`), chained as the training pipeline chains them."""
import json
import shutil

import pytest
from kfp import dsl

from components.ingest import ingest_component
from components.schema import schema_component
from components.statistics import statistics_component
from components.validate import validate_component
from flywheel import names
from flywheel.errors import DataError

from .conftest import LABEL, THRESHOLDS, span, write_span


def _chain(data, artifact, repository: str, prefix: str):
    examples = artifact(dsl.Dataset, f"{prefix}examples")
    ingest_component.python_func(data_path=str(data), data_rev="", label=LABEL, pii_columns=["rider_email"],
                                 examples=examples)
    stats = artifact(dsl.Artifact, f"{prefix}statistics")
    html = artifact(dsl.HTML, f"{prefix}statistics_html")
    statistics_component.python_func(examples=examples, statistics=stats, statistics_html=html,
                                     curated_schema="pipelines/schema/schema.pbtxt")
    schema = artifact(dsl.Artifact, f"{prefix}schema")
    schema_component.python_func(statistics=stats, curated_schema="pipelines/schema/schema.pbtxt", label=LABEL,
                                 schema=schema)
    anomalies = artifact(dsl.Artifact, f"{prefix}anomalies")
    validate_component.python_func(statistics=stats, schema=schema, model_repository=repository, model_name="taxi",
                                   drift_linf=THRESHOLDS.drift_linf, drift_jsd=THRESHOLDS.drift_jsd,
                                   skew_linf=THRESHOLDS.skew_linf, skew_jsd=THRESHOLDS.skew_jsd, anomalies=anomalies)
    return examples, stats, html, schema, anomalies


def test_wrappers_chain_and_use_the_production_baseline(tmp_path, artifact):
    repository = tmp_path / "repo"
    data = write_span(tmp_path, span(1), "span-001.csv")
    examples, stats, html, schema, anomalies = _chain(data, artifact, str(repository), "first_")
    assert examples.metadata["rows_train"] > 3500 and examples.metadata["data_version"].startswith("md5:")
    assert examples.metadata["pii_removed"] == ["rider_email"]
    assert stats.metadata["source"] == str(data) and stats.metadata["data_version"] == examples.metadata["data_version"]
    assert (tmp_path / "artifacts" / "first_statistics" / names.TRAIN / names.STATS_FILE).exists()
    assert "facets-overview" in open(html.path).read()
    assert schema.metadata["schema_source"].startswith("curated:")
    assert anomalies.metadata == {"baseline": "none (first run)", "anomalies": 0, "blocking": 0}

    # "Push" span 1's train statistics as version 1's baseline; span 2 is then compared with it.
    extra = repository / "taxi" / "1" / names.EXTRA_DIR
    extra.mkdir(parents=True)
    shutil.copy(f"{stats.path}/{names.TRAIN}/{names.STATS_FILE}", extra / names.BASELINE_STATS)
    *_, anomalies = _chain(write_span(tmp_path, span(2), "span-002.csv"), artifact, str(repository), "second_")
    assert anomalies.metadata["baseline"] == str(extra / names.BASELINE_STATS)
    measured = json.loads(open(f"{anomalies.path}/measurements.json").read())
    assert {m["kind"] for m in measured["measurements"]} == {"drift", "skew"}


def test_validate_wrapper_fails_the_task_on_blocking_anomalies(tmp_path, artifact):
    df = span(1, rows=2000)
    data = write_span(tmp_path, df.assign(fare=df["fare"].astype(str) + " USD"))
    with pytest.raises(DataError, match="feature 'fare'"):
        _chain(data, artifact, str(tmp_path / "repo"), "")


def test_component_interfaces_the_pipeline_wires():
    inputs = lambda c: set(c.component_spec.inputs)  # noqa: E731
    assert {"data_path", "data_rev", "label", "pii_columns"} <= inputs(ingest_component)
    assert set(ingest_component.component_spec.outputs) == {"examples"}
    assert set(statistics_component.component_spec.outputs) == {"statistics", "statistics_html"}
    assert {"statistics", "curated_schema", "label"} <= inputs(schema_component)
    assert {"statistics", "schema", "model_repository", "model_name", "drift_linf", "drift_jsd", "skew_linf",
            "skew_jsd"} <= inputs(validate_component)
    for component in (ingest_component, statistics_component, schema_component, validate_component):
        container = component.component_spec.implementation.container
        assert container.image == names.COMPONENT_IMAGE
        assert "pip install" not in " ".join(container.command)    # install_kfp_package=False


def test_data_steps_compile_into_a_pipeline(tmp_path):
    """The four wrappers wire and compile with kfp's real compiler (the lead's DAG adds the rest)."""
    from kfp import compiler

    @dsl.pipeline(name="data-steps")
    def data_steps(data_path: str = "data/spans/span-001.csv", model_repository: str = "model_repository"):
        examples = ingest_component(data_path=data_path, data_rev="", label=LABEL, pii_columns=["rider_email"])
        stats = statistics_component(examples=examples.outputs["examples"], curated_schema="pipelines/schema/schema.pbtxt")
        schema = schema_component(statistics=stats.outputs["statistics"], curated_schema="pipelines/schema/schema.pbtxt",
                                  label=LABEL)
        validate_component(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"],
                           model_repository=model_repository, model_name="taxi", drift_linf=0.1, drift_jsd=0.15,
                           skew_linf=0.1, skew_jsd=0.2)

    compiler.Compiler().compile(data_steps, str(tmp_path / "data_steps.yaml"))
    compiled = (tmp_path / "data_steps.yaml").read_text()
    for name in ("ingest-component", "statistics-component", "schema-component", "validate-component"):
        assert f"exec-{name}" in compiled
    assert "block_on_drift" in compiled and names.COMPONENT_IMAGE in compiled
