"""Argo Workflows on the real node: the workflow controller (built from its module by
controlplane/argo.py) runs beside the control plane, and every workflow pod's init and wait
containers are argoexec, an image of the static binary imported into the node's containerd. A
two-task DAG in the component image passes an output parameter from one pod to the next, as KFP's
compiled Workflows pass their drivers' outputs. What KFP's runs need on top of this (its driver and
launcher images, ML Metadata, the artifact store) is not on this node."""
from __future__ import annotations

import json
import time

import pytest

from controlplane import argo
from flywheel import names

NAMESPACE = "flywheel-argo"
TIMEOUT_S = 300


def workflow() -> dict:
    def container(code: str, *args: str) -> dict:
        return {"image": names.COMPONENT_IMAGE, "imagePullPolicy": "Never", "command": ["python", "-c", code, *args]}
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "pass-a-value", "namespace": NAMESPACE},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "dag": {"tasks": [
                {"name": "produce", "template": "produce"},
                {"name": "consume", "template": "consume", "dependencies": ["produce"],
                 "arguments": {"parameters": [{"name": "value",
                                               "value": "{{tasks.produce.outputs.parameters.value}}"}]}}]}},
            {"name": "produce", "container": container("open('/tmp/value', 'w').write(str(6 * 7))"),
             "outputs": {"parameters": [{"name": "value", "valueFrom": {"path": "/tmp/value"}}]}},
            {"name": "consume", "inputs": {"parameters": [{"name": "value"}]},
             "container": container("import sys; assert sys.argv[1] == '42', sys.argv; print('got', sys.argv[1])",
                                    "{{inputs.parameters.value}}")}]}}


@pytest.fixture(scope="module")
def controller(cluster, tmp_path_factory):
    plane, node = cluster
    bin_dir = argo.build(say=plane.say)
    node.import_archive(argo.executor_archive(tmp_path_factory.mktemp("argoexec")))
    plane.start_argo_controller(bin_dir, NAMESPACE, argo.EXECUTOR_IMAGE)
    return plane


def test_a_workflow_passes_a_value_between_two_pods_on_the_node(controller):
    plane = controller
    plane.apply([workflow()])
    deadline, status = time.monotonic() + TIMEOUT_S, {}
    while time.monotonic() < deadline:
        status = json.loads(plane.kubectl("get", "workflow", "pass-a-value", "-n", NAMESPACE, "-o", "json").stdout
                            ).get("status", {})
        if status.get("phase") in ("Succeeded", "Failed", "Error"):
            break
        time.sleep(2)
    pods = plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout
    assert status.get("phase") == "Succeeded", (
        f"{status.get('phase')}: {status.get('message')}\n{pods}\n"
        + json.dumps({n["displayName"]: (n["phase"], n.get("message")) for n in status.get("nodes", {}).values()})
        + "\n" + plane.log_tail(f"workflow-controller-{NAMESPACE}"))
    by_name = {n["displayName"]: n for n in status["nodes"].values()}
    assert by_name["produce"]["outputs"]["parameters"][0]["value"] == "42"
    assert by_name["consume"]["inputs"]["parameters"][0]["value"] == "42"
    logs = plane.kubectl("logs", "-n", NAMESPACE, "-l", "workflows.argoproj.io/workflow=pass-a-value", "-c", "main",
                         "--prefix").stdout
    assert "got 42" in logs, logs
    print(f"\n{pods}")
