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


def _records() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r]


def test_the_expected_alerts_are_all_there():
    assert {a["alert"] for a in _alerts()} >= {
        "FlywheelFeatureDriftSustained", "FlywheelPredictionDrift", "FlywheelSchemaAnomalies",
        "FlywheelLiveAccuracyDrop", "FlywheelHighErrorRate", "FlywheelLatencySLO", "FlywheelPredictionLogDrops",
        "FlywheelSidecarDown", "FlywheelUpstreamDown", "FlywheelModelStale", "FlywheelLogShippingStalled",
        "FlywheelLogSegmentsLost", "FlywheelFeedbackNotRecorded", "FlywheelFleetDriftStale"}


def test_rules_read_only_metrics_the_sidecar_exports_or_rules_record():
    exported = sidecar_metric_names()
    recorded = {r["record"] for r in _records()}
    assert "flywheel_requests_total" in exported and "flywheel_drift_values_total" in exported
    for rule in _records() + _alerts():
        unknown = metric_names_in(rule["expr"]) - exported - recorded - {"up"}
        assert not unknown, f"{rule.get('alert') or rule['record']} reads metrics nobody exports: {unknown}"


def test_committed_rules_prometheusrule_and_dashboards_are_their_rendering():
    result = subprocess.run([sys.executable, "-m", "monitoring.rendering", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_thresholds_are_rendered_from_params():
    """Change a threshold in params and the rules and dashboards follow; nothing is hard-coded."""
    from flywheel import params
    from monitoring import rendering
    base = params.load()
    changed = params.override(base, {"monitoring.min_live_accuracy": 0.83, "monitoring.min_drift_rows": 321,
                                     "monitoring.latency_slo_s": 0.25, "drift.psi": 0.31, "drift.alpha": 0.02,
                                     "monitoring.rules_window": "17m"})
    before = rendering.render(base)
    after = rendering.render(changed)
    rules = after[rendering.RULES_FILE]
    assert "flywheel:live_accuracy:fleet < 0.83" in rules and ">= 321" in rules and "> 0.25" in rules
    assert "p <= 0.02" in rules and "PSI 0.31" in rules and "[17m]" in rules and "[30m]" not in rules
    drift_dashboard = after[rendering.DASHBOARD_DIR / "flywheel-drift.json"]
    assert '"value": 0.31' in drift_dashboard and '"value": 0.02' in drift_dashboard
    assert '"value": 0.83' in drift_dashboard and '"value": 321' in drift_dashboard
    assert before[rendering.PROMETHEUS_RULE_FILE] != after[rendering.PROMETHEUS_RULE_FILE]


def test_drift_alert_reads_the_fleets_decision_with_the_pipelines_rule():
    from flywheel import params
    settings = params.load()
    (alert,) = [a for a in _alerts() if a["alert"] == "FlywheelFeatureDriftSustained"]
    assert 'flywheel_fleet_feature_drift{measure="drifted"}) == 1' in alert["expr"]
    assert f">= {settings.monitoring.min_drift_rows}" in alert["expr"]
    summary = alert["annotations"]["summary"]
    assert f"p <= {settings.drift.alpha:g}" in summary and f"W1 {settings.drift.wasserstein_sd:g} sd" in summary
