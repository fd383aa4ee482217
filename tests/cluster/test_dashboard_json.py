"""Static checks of the Grafana dashboard JSON: what Grafana needs to import it and what the
provisioning relies on. (Their queries are run against real data in test_dashboards_live.py.)"""
from __future__ import annotations

import json

import pytest

from flywheel import params

from tests.support.cluster import ROOT, metric_names_in, sidecar_metric_names

DASHBOARDS = sorted((ROOT / "monitoring/dashboards").glob("*.json"))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_importable(path):
    d = json.loads(path.read_text())
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "namespace", "model"} <= variables
    for panel in d["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_read_only_metrics_the_sidecar_exports(path):
    exported = sidecar_metric_names() | {"up"}
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel["targets"]:
            assert metric_names_in(target["expr"]) <= exported, f"{panel['title']}: {target['expr']}"


def _drift_panels() -> dict[str, dict]:
    d = json.loads((ROOT / "monitoring/dashboards/flywheel-drift.json").read_text())
    return {p["title"]: p for p in d["panels"]}


def test_drift_dashboard_has_its_panels():
    titles = " | ".join(_drift_panels())
    for needed in ("Feature drift over time", "drifting now", "Prediction drift", "Schema anomalies",
                   "Live accuracy", "model version"):
        assert needed in titles, needed


def test_drift_thresholds_are_the_pipelines():
    """A number on the dashboard means what it means in the pipeline's anomaly report."""
    settings = params.load().monitoring
    panels = _drift_panels()
    steps = {title: [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
             for title, p in panels.items() if title.startswith("Feature drift over time")}
    assert steps == {"Feature drift over time: numeric features (JSD)": [None, settings.drift_jsd],
                     "Feature drift over time: categorical features (L-infinity)": [None, settings.drift_linf]}
    (now,) = [p for t, p in panels.items() if "drifting now" in t]
    expr = now["targets"][0]["expr"]
    assert f"/ {settings.drift_linf:g} " in expr and f"/ {settings.drift_jsd:g})" in expr
