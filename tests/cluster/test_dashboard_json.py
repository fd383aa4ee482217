"""Static checks of the Grafana dashboard JSON: what Grafana needs to import it and what the
provisioning relies on. (Their queries are run against real data in test_dashboards_live.py.)"""
from __future__ import annotations

import json

import pytest

from flywheel import names, params

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
    import yaml
    rules = yaml.safe_load((ROOT / names.ALERT_RULES_FILE).read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exported = sidecar_metric_names() | {"up"} | recorded
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel["targets"]:
            assert metric_names_in(target["expr"]) <= exported, f"{panel['title']}: {target['expr']}"


def _drift_panels() -> dict[str, dict]:
    d = json.loads((ROOT / "monitoring/dashboards/flywheel-drift.json").read_text())
    return {p["title"]: p for p in d["panels"]}


def test_drift_dashboard_shows_the_rule_fleet_wide_and_per_pod():
    titles = " | ".join(_drift_panels())
    for needed in ("drifting now (fleet)", "Effect size / threshold (fleet)", "Holm-corrected p-value",
                   "per pod", "L-infinity (fleet", "Jensen-Shannon divergence (fleet", "PSI (fleet)",
                   "Prediction drift", "Schema anomalies", "Live accuracy (fleet)", "model version"):
        assert needed in titles, needed


def test_drift_thresholds_are_the_pipelines():
    """A number on the dashboard means what it means in the pipeline's drift report."""
    settings = params.load()
    panels = _drift_panels()

    def steps(title: str) -> list:
        return [s["value"] for s in panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps("Evidence (fleet): Holm-corrected p-value") == [None, settings.drift.alpha]
    assert steps("PSI (fleet)") == [None, settings.drift.psi]
    assert steps("L-infinity (fleet, TFDV's measure)") == [None, settings.drift.linf]
    assert steps("Live accuracy (fleet)") == [None, settings.monitoring.min_live_accuracy]
    description = panels["Effect size / threshold (fleet)"]["description"]
    assert f"W1 / {settings.drift.wasserstein_sd:g} sd" in description and f"PSI / {settings.drift.psi:g}" in description
