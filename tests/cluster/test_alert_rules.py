"""Alert rules: promtool accepts them, every alert has a firing and a non-firing unit test,
every alert carries severity, summary and runbook, and every metric they read is one the
sidecar exports (the contract in monitoring/metrics.py) or Prometheus' own `up`."""
from __future__ import annotations

import subprocess
import sys

import yaml

from tests.support.cluster import ROOT, metric_names_in, require_tool, sidecar_metric_names

RULES_DIR = ROOT / "monitoring/rules"
RULES = RULES_DIR / "flywheel-alerts.rules.yml"
TESTS = RULES_DIR / "flywheel-alerts.test.yml"


def _alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def _promtool(*args: str) -> subprocess.CompletedProcess:
    require_tool("promtool", "run `make system-deps` (Debian package prometheus)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR)


def test_promtool_check_rules():
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    result = _promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    cases = [t for test in yaml.safe_load(TESTS.read_text())["tests"] for t in test.get("alert_rule_test", [])]
    for alert in (a["alert"] for a in _alerts()):
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c.get("exp_alerts") for c in mine), f"{alert}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{alert}: no case where it must stay silent"


def test_every_alert_has_severity_summary_and_runbook():
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        assert alert["annotations"]["runbook"].strip(), alert["alert"]
        assert alert.get("for"), f"{alert['alert']}: no `for`, it would fire on one bad evaluation"


def test_every_documented_alert_is_there():
    assert {a["alert"] for a in _alerts()} >= {
        "FlywheelFeatureDriftSustained", "FlywheelPredictionDrift", "FlywheelSchemaAnomalies",
        "FlywheelLiveAccuracyDrop", "FlywheelHighErrorRate", "FlywheelLatencySLO", "FlywheelPredictionLogDrops",
        "FlywheelSidecarDown", "FlywheelUpstreamDown", "FlywheelModelStale"}


def test_rules_read_only_metrics_the_sidecar_exports():
    exported = sidecar_metric_names()
    assert "flywheel_requests_total" in exported and "flywheel_feature_drift" in exported
    for alert in _alerts():
        unknown = metric_names_in(alert["expr"]) - exported - {"up"}
        assert not unknown, f"{alert['alert']} reads metrics the sidecar does not export: {unknown}"


def test_prometheusrule_manifest_is_up_to_date():
    result = subprocess.run([sys.executable, str(RULES_DIR / "prometheusrule.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_drift_alerts_use_the_pipelines_thresholds():
    from flywheel import params
    settings = params.load().monitoring
    (alert,) = [a for a in _alerts() if a["alert"] == "FlywheelFeatureDriftSustained"]
    assert f'{{measure="linf"}} > {settings.drift_linf:g}' in alert["expr"]
    assert f'{{measure="jsd"}} > {settings.drift_jsd:g}' in alert["expr"]
