"""The KFP wrappers, called through `component.python_func` with real artifacts (conftest
`artifact`), chained as the training pipeline chains them."""
import json

import pytest
from kfp import dsl

from components.ingest import ingest_component
from components.resolve import resolve_component
from components.schema import schema_component
from components.statistics import statistics_component
from components.validate import validate_component
from flywheel import artifacts, bundle, names
from flywheel.errors import DataError
from flywheel.params import section_dict
from tests.support.spans import SETTINGS, span, write_span


def _chain(data, artifact, repository: str, prefix: str):
    examples = artifact(dsl.Dataset, f"{prefix}examples")
    ingest_component.python_func(data_path=str(data), data_rev="", params=section_dict(SETTINGS.ingest),
                                 scale=section_dict(SETTINGS.scale), examples=examples)
    production = artifact(dsl.Artifact, f"{prefix}production")
    resolve_component.python_func(push={"model_repository": repository, "model_name": "taxi"}, production=production)
    stats = artifact(dsl.Artifact, f"{prefix}statistics")
    html = artifact(dsl.HTML, f"{prefix}statistics_html")
    facets = artifact(dsl.HTML, f"{prefix}facets_html")
    statistics_component.python_func(examples=examples, params=section_dict(SETTINGS.schema),
                                     drift=section_dict(SETTINGS.drift), scale=section_dict(SETTINGS.scale),
                                     statistics=stats, statistics_html=html, facets_html=facets)
    _self_contained_report(html.path)
    assert "facets-overview" in open(facets.path).read()      # TFDV's page, the extra
    schema = artifact(dsl.Artifact, f"{prefix}schema")
    schema_component.python_func(statistics=stats, params=section_dict(SETTINGS.schema), schema=schema)
    anomalies = artifact(dsl.Artifact, f"{prefix}anomalies")
    report = artifact(dsl.HTML, f"{prefix}report")
    card = artifact(dsl.Markdown, f"{prefix}data_card")
    try:
        validate_component.python_func(statistics=stats, schema=schema, examples=examples, production=production,
                                       params=section_dict(SETTINGS.validate), drift=section_dict(SETTINGS.drift),
                                       scale=section_dict(SETTINGS.scale), anomalies=anomalies, data_card=card,
                                       report=report)
    finally:
        _self_contained_report(report.path)
        assert open(card.path).read().startswith("# Data card")
    return examples, stats, html, schema, anomalies


def _self_contained_report(path: str) -> None:
    """An HTML artifact of ours exists (validate's also when it blocks) and fetches nothing."""
    page = open(path).read()
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    assert not any(f'{attr}="{scheme}' in page for attr in ("src", "href") for scheme in ("http", "//"))


def test_wrappers_chain_and_use_the_production_baseline(tmp_path, artifact):
    repository = tmp_path / "repo"
    data = write_span(tmp_path, span(1), "span-001.csv")
    examples, stats, html, schema, anomalies = _chain(data, artifact, str(repository), "first_")
    assert examples.metadata["rows_train"] > 3500 and examples.metadata["data_version"].startswith("md5:")
    assert examples.metadata["pii_removed"] == ["rider_email"]
    assert stats.metadata["source"] == str(data) and stats.metadata["data_version"] == examples.metadata["data_version"]
    assert artifacts.stats_file(stats.path, names.TRAIN).exists()
    assert schema.metadata["schema_source"].startswith("curated:")
    assert {k: v for k, v in anomalies.metadata.items() if k != "params"} == \
        {"baseline": "none (first run)", "anomalies": 0, "blocking": 0, "drifted": []}
    assert anomalies.metadata["params"]["drift"] == section_dict(SETTINGS.drift)
    assert examples.metadata["engine"] == "in_memory" and stats.metadata["engine"] == "in_memory"

    # Span 1's train statistics as version 1's baseline; span 2 is then compared with it.
    bundle.add_files(str(repository / "taxi" / "1"),
                     {names.BASELINE_STATS: str(artifacts.stats_file(stats.path, names.TRAIN)),
                      names.BASELINE_PROFILES: str(artifacts.profiles_file(stats.path, names.TRAIN))})
    *_, anomalies = _chain(write_span(tmp_path, span(2), "span-002.csv"), artifact, str(repository), "second_")
    assert anomalies.metadata["baseline"] == "version 1"
    measured = json.loads(open(f"{anomalies.path}/{names.MEASUREMENTS_FILE}").read())
    assert measured["drift"] and measured["skew"] and not any(r["drifted"] for r in measured["drift"])


def test_validate_wrapper_fails_the_task_on_blocking_anomalies(tmp_path, artifact):
    df = span(1, rows=2000)
    data = write_span(tmp_path, df.assign(fare=df["fare"].astype(str) + " USD"))
    with pytest.raises(DataError, match="feature 'fare'"):
        _chain(data, artifact, str(tmp_path / "repo"), "")


def test_component_interfaces_the_pipeline_wires():
    inputs = lambda c: set(c.component_spec.inputs)  # noqa: E731
    assert inputs(ingest_component) == {"data_path", "data_rev", "params", "scale", "dvc_repo"}
    assert set(ingest_component.component_spec.outputs) == {"examples"}
    assert set(statistics_component.component_spec.outputs) == {"statistics", "statistics_html", "facets_html"}
    assert inputs(schema_component) == {"statistics", "params"}
    assert inputs(validate_component) == {"statistics", "schema", "examples", "production", "params", "drift", "scale"}
    assert set(validate_component.component_spec.outputs) == {"anomalies", "data_card", "report"}
    assert inputs(statistics_component) == {"examples", "params", "drift", "scale"}
    assert inputs(resolve_component) == {"push"}
    for component in (ingest_component, resolve_component, statistics_component, schema_component, validate_component):
        container = component.component_spec.implementation.container
        assert container.image == names.COMPONENT_IMAGE
        assert "pip install" not in " ".join(container.command)    # install_kfp_package=False
