"""`make deploy OVERLAY=dev` end to end against the control plane, and the digest refusal around it.

The manifests pin every image by an all-zero placeholder digest until `make pin-digests` runs
where a registry is reachable, and `make deploy` refuses them. The one exception is
ALLOW_PLACEHOLDER_DIGESTS=fake-nodes, honoured only when every node of the target cluster is a
kwok fake node: there no image is ever pulled, so a placeholder cannot reach a kubelet.
"""
from __future__ import annotations

import subprocess

import pytest

from tests.support.cluster import ROOT

NAMESPACE = "flywheel-dev"


def _make_deploy(plane, *variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "deploy", "OVERLAY=dev", *variables], cwd=ROOT,
                          env=plane.env(), capture_output=True, text=True, timeout=600)


def _deployed(plane) -> bool:
    return plane.kubectl("get", "deployment", "flywheel-serving", "-n", NAMESPACE, check=False).returncode == 0


def test_make_deploy_refuses_placeholder_digests_without_the_override(plane):
    before = _deployed(plane)
    result = _make_deploy(plane)
    assert result.returncode != 0
    assert "refusing to deploy placeholder digests" in result.stderr, result.stderr
    assert "placeholder digest: manifests/base/kustomization.yaml" in result.stderr
    assert _deployed(plane) == before, "refused, yet something was applied"


def test_make_deploy_dev_rolls_out_on_fake_nodes(plane):
    result = _make_deploy(plane, "ALLOW_PLACEHOLDER_DIGESTS=fake-nodes")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every node (5) is a kwok fake node" in result.stdout
    assert 'deployment "flywheel-serving" successfully rolled out' in result.stdout


@pytest.fixture
def node_with_a_kubelet(plane):
    """A Node object without kwok's annotation: to the check, a node whose kubelet pulls images.
    Tainted so that nothing is scheduled on it while it exists."""
    name = "node-with-a-kubelet"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"taints": [{"key": "flywheel.io/test", "value": "unschedulable", "effect": "NoSchedule"}]}}
    plane.apply([node])
    try:
        yield name
    finally:
        plane.kubectl("delete", "node", name, "--wait=false")


def test_override_is_refused_where_a_node_would_pull_images(plane, node_with_a_kubelet):
    result = _make_deploy(plane, "ALLOW_PLACEHOLDER_DIGESTS=fake-nodes")
    assert result.returncode != 0
    assert f"this cluster has nodes that run containers ({node_with_a_kubelet})" in result.stderr, result.stderr
    assert "refusing to deploy placeholder digests" in result.stderr
