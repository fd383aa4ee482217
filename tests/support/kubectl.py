"""kubectl steps the control-plane tests share."""
from __future__ import annotations

import copy
import json
import subprocess

import yaml

from controlplane.cluster import ControlPlane, wait_until

SERVING = "flywheel-serving"
SELECTOR = "app.kubernetes.io/name=flywheel-serving"


def server_side_apply(plane: ControlPlane, objects: list[dict], *flags: str) -> subprocess.CompletedProcess:
    """`kubectl apply --server-side` as `make deploy` runs it (strict field validation is the
    default there); the result is returned, not checked."""
    return plane.kubectl("apply", "--server-side", *flags, "-f", "-", stdin=yaml.safe_dump_all(objects), check=False)


def namespace_of(objects: list[dict]) -> str:
    (namespace,) = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    return namespace


def in_namespace(objects: list[dict], namespace: str) -> list[dict]:
    """The same objects moved to another namespace (kustomize's `namespace:` does the same)."""
    old = namespace_of(objects)
    moved = copy.deepcopy(objects)
    for obj in moved:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = namespace
        elif obj["metadata"].get("namespace") == old:
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            if subject.get("namespace") == old:
                subject["namespace"] = namespace
    return moved


def contents(plane: ControlPlane, objects: list[dict]) -> dict[str, str]:
    """kind/name -> what the object says (labels, annotations, generation and everything but its
    status), for the objects that exist: resourceVersions would also move with status updates."""
    found = {}
    for obj in objects:
        kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        result = plane.kubectl("get", f"{kind}.{group}" if group else kind, name, *(["-n", ns] if ns else []),
                               "-o", "json", check=False)
        if result.returncode == 0:
            live = json.loads(result.stdout)
            live.pop("status", None)
            live["metadata"] = {k: live["metadata"].get(k) for k in ("labels", "annotations", "generation")}
            found[f"{kind}/{name}"] = json.dumps(live, sort_keys=True)
    return found


def serving_pods(plane: ControlPlane, namespace: str) -> list[dict]:
    pods = json.loads(plane.kubectl("get", "pods", "-n", namespace, "-l", SELECTOR, "-o", "json").stdout)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def wait_rolled_out(plane: ControlPlane, namespace: str, timeout_s: float = 120) -> dict:
    """Wait until the Deployment's current template runs on all its replicas, all Ready."""
    def done():
        d = json.loads(plane.kubectl("get", "deployment", SERVING, "-n", namespace, "-o", "json").stdout)
        s, want = d.get("status", {}), d["spec"]["replicas"]
        return d if (s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas") == want
                     and s.get("readyReplicas") == want and s.get("replicas") == want) else None
    return wait_until(done, timeout_s, f"deployment {namespace}/{SERVING} rolled out", interval_s=1)
