"""Every overlay against a real API server: server-side apply, dry run and real, then the
Deployment's pods scheduled onto kwok nodes.

The overlays run in order dev, prod, gpu; gpu is prod's namespace with the GPU changes, so its
apply is also an upgrade of a running prod install (a rollout onto the GPU nodes).
"""
from __future__ import annotations

import json

import pytest

from tests.support.cluster import OVERLAYS
from controlplane.cluster import DEFAULT_NODES
from tests.support.kubectl import contents, namespace_of, server_side_apply, serving_pods, wait_rolled_out

GPU_NODES = {n.name for n in DEFAULT_NODES if n.gpus}
CPU_NODES = {n.name for n in DEFAULT_NODES if not n.gpus}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_server_side_dry_run_then_apply_then_scheduled(plane, rendered, overlay):
    objects = rendered[overlay]
    namespace = namespace_of(objects)
    # A server-side dry run checks namespaced objects inside their namespace, so on a fresh
    # cluster the Namespace has to exist first; it is the only object applied before the dry run.
    created = server_side_apply(plane, [o for o in objects if o["kind"] == "Namespace"])
    assert created.returncode == 0, created.stderr

    before = contents(plane, objects)
    dry = server_side_apply(plane, objects, "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    # No warning either: Pod Security "warn: restricted" would print one for a non-compliant
    # pod template, and deprecated APIs or unknown fields would too.
    assert dry.stderr.strip() == "", dry.stderr
    assert dry.stdout.count("(server dry run)") == len(objects), dry.stdout
    assert contents(plane, objects) == before, "the dry run changed the cluster"

    applied = server_side_apply(plane, objects)
    assert applied.returncode == 0, applied.stderr
    assert applied.stderr.strip() == "", applied.stderr
    assert set(contents(plane, objects)) == {f"{o['kind']}/{o['metadata']['name']}" for o in objects}

    deployment = wait_rolled_out(plane, namespace)
    pods = serving_pods(plane, namespace)
    assert len(pods) == deployment["spec"]["replicas"]
    nodes = [p["spec"]["nodeName"] for p in pods]
    assert set(nodes) <= (GPU_NODES if overlay == "gpu" else CPU_NODES), nodes
    if overlay == "prod":  # topologySpreadConstraints: one replica per node (DoNotSchedule)
        assert len(set(nodes)) == len(nodes), nodes
    if overlay == "gpu":
        requests = [c["resources"]["requests"] for p in pods for c in p["spec"]["containers"] if c["name"] == "tf-serving"]
        assert all(r.get("nvidia.com/gpu") == "1" for r in requests), requests
    # The claim the pods mount is bound (they would not have been scheduled otherwise).
    claim = json.loads(plane.kubectl("get", "pvc", "flywheel-model-repository", "-n", namespace, "-o", "json").stdout)
    assert claim["status"]["phase"] == "Bound"


# prod and gpu share the flywheel namespace, which runs gpu after the test above.
@pytest.mark.parametrize("overlay", ["dev", "gpu"])
def test_reapplying_an_overlay_changes_nothing(plane, rendered, overlay):
    """No field is fought over between the manifests, API defaulting and the controllers: a second
    apply of the installed overlay leaves every object as it was."""
    objects = rendered[overlay]
    assert server_side_apply(plane, objects).returncode == 0
    wait_rolled_out(plane, namespace_of(objects))
    before = contents(plane, objects)
    again = server_side_apply(plane, objects)
    assert again.returncode == 0, again.stderr
    assert contents(plane, objects) == before
