"""Admission and validation as the API server does them: Pod Security "restricted" in the
Flywheel namespace, and prometheus-operator's real CRDs on the ServiceMonitor and PrometheusRule."""
from __future__ import annotations

import copy

import pytest
import yaml

from tests.support.cluster import find
from tests.support.kubectl import namespace_of, server_side_apply


@pytest.fixture(scope="module")
def prod_namespace(plane, rendered) -> str:
    objects = rendered["prod"]
    assert server_side_apply(plane, [find(objects, "Namespace")]).returncode == 0
    return namespace_of(objects)


def _pod(name: str, pod_security: dict | None, container_security: dict | None) -> dict:
    container = {"name": "app", "image": "registry.invalid/app:1"}
    if container_security is not None:
        container["securityContext"] = container_security
    spec = {"containers": [container]}
    if pod_security is not None:
        spec["securityContext"] = pod_security
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("name, pod_security, container_security, refused_for", [
    # Allowed by "baseline", refused by "restricted": the gap the namespace label closes.
    ("no-security-context", None, None,
     ["allowPrivilegeEscalation != false", "unrestricted capabilities", "runAsNonRoot != true", "seccompProfile"]),
    ("runs-as-root", {**RESTRICTED_POD, "runAsNonRoot": False, "runAsUser": 0}, RESTRICTED_CONTAINER,
     ["runAsNonRoot != true", "runAsUser=0"]),
    # (privileged implies privilege escalation: the API refuses allowPrivilegeEscalation=false with it)
    ("privileged", RESTRICTED_POD, {"capabilities": {"drop": ["ALL"]}, "privileged": True},
     ["privileged", "allowPrivilegeEscalation != false"]),
    ("adds-net-admin", RESTRICTED_POD, {**RESTRICTED_CONTAINER, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}},
     ["unrestricted capabilities"]),
])
def test_pod_violating_restricted_is_refused_in_the_flywheel_namespace(plane, prod_namespace, name, pod_security,
                                                                        container_security, refused_for):
    result = plane.kubectl("apply", "--server-side", "-n", prod_namespace, "-f", "-", check=False,
                           stdin=yaml.safe_dump(_pod(name, pod_security, container_security)))
    assert result.returncode != 0, f"{name} was admitted"
    assert 'violates PodSecurity "restricted:v1.32"' in result.stderr, result.stderr
    for reason in refused_for:
        assert reason in result.stderr, result.stderr
    assert plane.kubectl("get", "pod", name, "-n", prod_namespace, check=False).returncode != 0


def test_restricted_pod_is_admitted(plane, prod_namespace):
    """The same check passes a compliant pod: the refusals above are about the violations."""
    pod = _pod("compliant", RESTRICTED_POD, RESTRICTED_CONTAINER)
    result = plane.kubectl("apply", "--server-side", "--dry-run=server", "-n", prod_namespace, "-f", "-",
                           stdin=yaml.safe_dump(pod), check=False)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


# --- the real CRDs ---------------------------------------------------------------------------------
def _broken(objects: list[dict], kind: str, breaks) -> dict:
    obj = copy.deepcopy(find(objects, kind))
    breaks(obj["spec"])
    return obj


@pytest.mark.parametrize("kind, breaks, message", [
    ("ServiceMonitor", lambda s: s["endpoints"][0].update(intervall="15s"),
     ".spec.endpoints[0].intervall: field not declared in schema"),
    ("ServiceMonitor", lambda s: s["endpoints"][0].update(interval="15 seconds"), "spec.endpoints[0].interval"),
    ("ServiceMonitor", lambda s: s["endpoints"][0].update(scheme="ftp"), "spec.endpoints[0].scheme"),
    ("PrometheusRule", lambda s: s["groups"][0]["rules"][0].update({"for": "15 minutes"}), "for"),
    ("PrometheusRule", lambda s: s["groups"][0]["rules"][0].update(severity="page"),
     ".rules[0].severity: field not declared in schema"),
])
def test_crds_refuse_what_the_operator_would_not_read(plane, rendered, prod_namespace, kind, breaks, message):
    """The committed objects are accepted (the overlay tests apply them); a misspelt field or a
    malformed duration is refused by the CRD's schema and strict field validation."""
    result = server_side_apply(plane, [_broken(rendered["prod"], kind, breaks)], "--dry-run=server")
    assert result.returncode != 0, f"broken {kind} accepted"
    assert message in result.stderr, result.stderr
