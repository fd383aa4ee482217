"""RBAC as the API server decides it: the pipeline's service account can do what a Kubeflow
Pipelines step does (Argo's executor and the KFP launcher) and nothing more; the serving pods'
account can do nothing."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.support.kubectl import namespace_of, server_side_apply

PIPELINE = "flywheel-pipeline"
SERVING = "flywheel-serving"

# (verb, resource, expected) in the Flywheel namespace. "what the pipeline does" first.
CAN_I = [
    # Argo's emissary executor: reports each step's outputs, follows its own pod.
    ("create", "workflowtaskresults.argoproj.io", True),
    ("patch", "workflowtaskresults.argoproj.io", True),
    ("get", "pods", True),
    ("watch", "pods", True),
    ("patch", "pods", True),
    ("get", "pods/log", True),
    # The KFP launcher: its two settings ConfigMaps and the artifact store's credentials, by name.
    ("get", "configmaps/kfp-launcher", True),
    ("get", "configmaps/metadata-grpc-configmap", True),
    ("get", "secrets/mlpipeline-minio-artifact", True),
    # ... and no more.
    ("delete", "workflowtaskresults.argoproj.io", False),
    ("list", "pods", False),
    ("create", "pods", False),
    ("delete", "pods", False),
    ("create", "pods/exec", False),
    ("list", "configmaps", False),
    ("get", "configmaps/flywheel-tfserving-config", False),
    ("update", "configmaps/kfp-launcher", False),
    ("list", "secrets", False),
    ("watch", "secrets", False),
    ("get", "secrets/another-secret", False),
    ("update", "secrets/mlpipeline-minio-artifact", False),
    ("get", "persistentvolumeclaims", False),
    ("patch", "deployments.apps", False),
    ("create", "serviceaccounts/token", False),
    ("create", "rolebindings.rbac.authorization.k8s.io", False),
    ("impersonate", "serviceaccounts", False),
]


@pytest.fixture(scope="module")
def namespace(plane, rendered) -> str:
    objects = rendered["prod"]
    result = server_side_apply(plane, objects)
    assert result.returncode == 0, result.stderr
    return namespace_of(objects)


def _can_i(plane, namespace: str, account: str, verb: str, resource: str, *scope: str) -> bool:
    result = plane.kubectl("auth", "can-i", verb, resource, *scope,
                           f"--as=system:serviceaccount:{namespace}:{account}", check=False)
    # An unknown resource type would answer "no" for the wrong reason.
    assert "doesn't have a resource type" not in result.stderr, result.stderr
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


@pytest.mark.parametrize("verb, resource, expected", CAN_I, ids=[f"{v} {r}" for v, r, _ in CAN_I])
def test_pipeline_service_account_can_i(plane, namespace, verb, resource, expected):
    assert _can_i(plane, namespace, PIPELINE, verb, resource, "-n", namespace) is expected


@pytest.mark.parametrize("verb, resource, scope", [
    ("get", "pods", ["-n", "kube-system"]),
    ("get", "secrets/mlpipeline-minio-artifact", ["-n", "kube-system"]),
    ("list", "pods", ["--all-namespaces"]),
    ("list", "nodes", []),
    ("get", "namespaces", []),
])
def test_pipeline_service_account_has_nothing_outside_its_namespace(plane, namespace, verb, resource, scope):
    assert not _can_i(plane, namespace, PIPELINE, verb, resource, *scope)


def _rules(plane, namespace: str, account: str) -> set[tuple]:
    """Every resource rule the account holds in the namespace (a SelfSubjectRulesReview made as
    that account, which is what `kubectl auth can-i --list` shows), as (group, resource, name, verb)."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": namespace}}
    result = plane.kubectl("create", "--validate=false", "-o", "json", f"--as=system:serviceaccount:{namespace}:{account}", "-f", "-",
                           stdin=yaml.safe_dump(review))
    status = json.loads(result.stdout)["status"]
    assert not status.get("incomplete"), status
    return {(g, r, n, v) for rule in status["resourceRules"] for g in rule.get("apiGroups", [""])
            for r in rule["resources"] for n in rule.get("resourceNames", ["*"]) for v in rule["verbs"]}


# Granted to every authenticated user by Kubernetes' bootstrap policy (system:basic-user).
SELF_REVIEWS = {("authorization.k8s.io", r, "*", "create")
                for r in ("selfsubjectaccessreviews", "selfsubjectrulesreviews")} | {
               ("authentication.k8s.io", "selfsubjectreviews", "*", "create")}


def test_pipeline_rules_are_exactly_the_table(plane, namespace):
    allowed = set()
    for verb, resource, expected in CAN_I:
        if expected:
            name = resource.split("/")[1] if resource.startswith(("configmaps/", "secrets/")) else "*"
            kind = resource.split("/")[0] if name != "*" else resource
            group = kind.split(".", 1)[1] if "." in kind else ""
            allowed.add((group, kind.split(".")[0], name, verb))
    assert _rules(plane, namespace, PIPELINE) - SELF_REVIEWS == allowed


def test_serving_service_account_can_do_nothing(plane, namespace):
    assert _rules(plane, namespace, SERVING) - SELF_REVIEWS == set()
