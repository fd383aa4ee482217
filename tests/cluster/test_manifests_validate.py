"""Every overlay builds, and every rendered object is valid for the pinned Kubernetes version.

Built-in kinds: kubernetes-validate in strict mode (unknown fields rejected). The Prometheus
operator's CRDs (ServiceMonitor, PrometheusRule) are not in its schema set: they are checked
against the strict JSON schemas in tests/cluster/schemas/, written for this project from the
prometheus-operator CRD definitions (the subset of fields Flywheel may use).
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from tests.support.cluster import KUBERNETES_VERSION, OVERLAYS

SCHEMAS = Path(__file__).resolve().parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule-monitoring-v1.json",
}
EXPECTED_KINDS = {
    "Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service",
    "PersistentVolumeClaim", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler",
    "NetworkPolicy", "ServiceMonitor", "PrometheusRule",
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_expected_kinds(rendered, overlay):
    kinds = {o["kind"] for o in rendered[overlay]}
    assert kinds == EXPECTED_KINDS, f"{overlay}: unexpected {kinds ^ EXPECTED_KINDS}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_in_strict_mode(rendered, overlay):
    errors = []
    for obj in rendered[overlay]:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMAS:
            schema = json.loads(CRD_SCHEMAS[key].read_text())
            validator = jsonschema.Draft202012Validator(schema)
            errors += [f"{where}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{where}: no schema: {e.message}")
    assert not errors, "\n".join(errors)


def test_crd_schemas_reject_what_the_operator_would_reject(rendered):
    """The hand-written schemas are strict: a misspelt field or a bad duration fails."""
    monitor = next(o for o in rendered["prod"] if o["kind"] == "ServiceMonitor")
    schema = json.loads(CRD_SCHEMAS[("monitoring.coreos.com/v1", "ServiceMonitor")].read_text())
    bad = json.loads(json.dumps(monitor))
    bad["spec"]["endpoints"][0]["intervall"] = "15s"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    rule = next(o for o in rendered["prod"] if o["kind"] == "PrometheusRule")
    schema = json.loads(CRD_SCHEMAS[("monitoring.coreos.com/v1", "PrometheusRule")].read_text())
    bad = json.loads(json.dumps(rule))
    bad["spec"]["groups"][0]["rules"][0]["for"] = "15 minutes"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_lands_in_the_overlay_namespace(rendered, overlay):
    namespace = next(o for o in rendered[overlay] if o["kind"] == "Namespace")["metadata"]["name"]
    stray = [f"{o['kind']}/{o['metadata']['name']}" for o in rendered[overlay]
             if o["kind"] != "Namespace" and o["metadata"].get("namespace") != namespace]
    assert not stray, f"{overlay}: not in namespace {namespace}: {stray}"
