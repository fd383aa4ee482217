"""Every overlay builds, and every rendered object is valid for the pinned Kubernetes version.

Built-in kinds: kubernetes-validate in strict mode (unknown fields rejected). The Prometheus
operator's kinds (ServiceMonitor, PrometheusRule, AlertmanagerConfig) against the openAPIV3Schema of prometheus-operator's
own CRDs, read from its Go module (controlplane/modules.py pins the release; nothing is copied into
the repository), made strict the way the API server's strict field validation is: an unknown
field is an error. tests/controlplane applies the same objects to a real API server.
"""
from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controlplane import modules
from tests.support.cluster import KUBERNETES_VERSION, OVERLAYS

EXPECTED_KINDS = {
    "Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service",
    "PersistentVolumeClaim", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler",
    "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Secret", "AlertmanagerConfig",
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_expected_kinds(rendered, overlay):
    kinds = {o["kind"] for o in rendered[overlay]}
    assert kinds == EXPECTED_KINDS, f"{overlay}: unexpected {kinds ^ EXPECTED_KINDS}"


def _strict(node) -> None:
    """Close every object schema that lists its properties, unless the CRD keeps unknown fields."""
    if not isinstance(node, dict):
        return
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node.setdefault("additionalProperties", False)
    for key in ("properties", "patternProperties"):
        for child in node.get(key, {}).values():
            _strict(child)
    for key in ("items", "additionalProperties", "not"):
        _strict(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key, []):
            _strict(child)


class _CRDLoader(yaml.SafeLoader):
    """YAML 1.2 as the API server reads it: a bare `=` (the AlertmanagerConfig matchType enum) is
    the string "=", not YAML 1.1's value tag."""


_CRDLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict JSON schema, from prometheus-operator's CRDs."""
    schemas = {}
    for path in modules.prometheus_operator_crds():
        crd = yaml.load(path.read_text(), Loader=_CRDLoader)
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            _strict(schema)
            schema["properties"]["metadata"] = {"type": "object"}  # the API server's part, not the CRD's
            schemas[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = schema
    return schemas


def _crd_errors(schema: dict, obj: dict) -> list[str]:
    # OpenAPI v3.0 schemas are JSON Schema draft 4 in their keywords.
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft4Validator(schema).iter_errors(obj)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_in_strict_mode(rendered, crd_schemas, overlay):
    errors = []
    for obj in rendered[overlay]:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        key = (obj["apiVersion"], obj["kind"])
        if key[1] in ("ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"):
            if key not in crd_schemas:
                errors.append(f"{where}: prometheus-operator serves no {key}")
            else:
                errors += [f"{where}: {e}" for e in _crd_errors(crd_schemas[key], obj)]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{where}: no schema: {e.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("kind, breaks, path", [
    ("ServiceMonitor", lambda s: s["endpoints"][0].update(intervall="15s"), "spec.endpoints.0"),
    ("ServiceMonitor", lambda s: s["endpoints"][0].update(interval="15 seconds"), "spec.endpoints.0.interval"),
    ("PrometheusRule", lambda s: s["groups"][0]["rules"][0].update({"for": "15 minutes"}), "spec.groups.0.rules.0.for"),
    ("PrometheusRule", lambda s: s["groups"][0]["rules"][0].update(severity="page"), "spec.groups.0.rules.0"),
])
def test_crd_schemas_reject_what_the_operator_would_reject(rendered, crd_schemas, kind, breaks, path):
    """Strict like the API server: a misspelt field or a malformed duration is an error."""
    obj = copy.deepcopy(next(o for o in rendered["prod"] if o["kind"] == kind))
    assert not _crd_errors(crd_schemas[(obj["apiVersion"], kind)], obj)
    breaks(obj["spec"])
    errors = _crd_errors(crd_schemas[(obj["apiVersion"], kind)], obj)
    assert any(e.startswith(path + ":") for e in errors), errors


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_lands_in_the_overlay_namespace(rendered, overlay):
    namespace = next(o for o in rendered[overlay] if o["kind"] == "Namespace")["metadata"]["name"]
    stray = [f"{o['kind']}/{o['metadata']['name']}" for o in rendered[overlay]
             if o["kind"] != "Namespace" and o["metadata"].get("namespace") != namespace]
    assert not stray, f"{overlay}: not in namespace {namespace}: {stray}"
