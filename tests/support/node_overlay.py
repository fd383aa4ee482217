"""The local overlay on the kubelet node (tests/node): what is applied, where, and how to tell
it is up. One definition for the node tests that deploy it and the ones that load it."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flywheel import names, serving_logs
from flywheel.loopback import wait_until
from tests.support.cluster import MANIFESTS
from tests.support.servers import push_version

NAMESPACE = "flywheel-dev"
OVERLAY = MANIFESTS / "overlays" / "local"
MODEL = names.DEFAULT_MODEL_NAME
SERVING = "flywheel-serving"
SERVING_SELECTOR = "app.kubernetes.io/name=flywheel-serving"
POD_UID = 10001
# Where the trigger would find KFP; no backend is needed for the trigger to start.
PLACEHOLDER_KFP_HOST = "http://ml-pipeline.kubeflow:8888"


def chown_tree(path: Path, uid: int = POD_UID) -> None:
    for item in [path, *path.rglob("*")]:
        os.chown(item, uid, uid)


def push_owned(exported: dict[int, Path], repository: Path, version: int) -> Path:
    """A version pushed as the push step does, owned by the pods' UID as a provisioned volume is."""
    final = push_version(exported, repository, version)
    chown_tree(final)
    return final


def deployments(plane) -> list[dict]:
    return json.loads(plane.kubectl("get", "deployments", "-n", NAMESPACE, "-o", "json").stdout)["items"]


def all_ready(plane) -> bool:
    items = deployments(plane)
    return bool(items) and all(d["status"].get("readyReplicas", 0) == d["spec"]["replicas"]
                               and d["status"].get("updatedReplicas", 0) == d["spec"]["replicas"]
                               and d["status"].get("replicas", 0) == d["spec"]["replicas"] for d in items)


def pods(plane, selector: str = SERVING_SELECTOR) -> list[dict]:
    """The pods of `selector` that are not on their way out."""
    items = json.loads(plane.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def service_url(plane, name: str = SERVING) -> str:
    service = json.loads(plane.kubectl("get", "service", name, "-n", NAMESPACE, "-o", "json").stdout)
    return f"http://{service['spec']['clusterIP']}"


def wait_all_ready(plane, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    wait_until(lambda: all_ready(plane), timeout_s, what,
               detail=lambda: "\n" + plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout
               + "\n" + plane.kubectl("describe", "pods", "-n", NAMESPACE, check=False).stdout[-4000:],
               interval_s=2)
    return time.monotonic() - started


def deploy(plane, repository: Path, exported: dict[int, Path]) -> dict:
    """`kubectl apply -k` the overlay with version 1 in a hostPath volume the claim binds to."""
    push_owned(exported, repository, 1)
    # The sidecar's writable subPath: kubelet would create a missing one owned by root.
    (repository / MODEL / serving_logs.LOGS_DIR).mkdir(parents=True, exist_ok=True)
    chown_tree(repository)
    plane.apply([{
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "local-model-repository"},
        "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": str(repository), "type": "Directory"}}}])
    applied = plane.kubectl("apply", "-k", str(OVERLAY), timeout=300)
    # The step manifests/base/trigger-kfp-secret.yaml asks for: until `host` is set the trigger
    # exits at start.
    set_trigger_kfp_host(plane, PLACEHOLDER_KFP_HOST)
    ready_s = wait_all_ready(plane, 600, "every Deployment of the local overlay Ready")
    return {"plane": plane, "repository": repository, "applied": applied.stdout, "ready_s": ready_s}


def set_trigger_kfp_host(plane, host: str) -> None:
    secret = plane.kubectl("create", "secret", "generic", "flywheel-trigger-kfp", "-n", NAMESPACE,
                           f"--from-literal=host={host}", "--from-literal=token=unused-here",
                           "--dry-run=client", "-o", "yaml").stdout
    plane.kubectl("apply", "-f", "-", stdin=secret)
