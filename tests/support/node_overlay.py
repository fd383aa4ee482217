"""The local overlay on the kubelet node (tests/node): what is applied, where, and how to tell
it is up. One definition for the node tests that deploy it and the ones that load it."""
from __future__ import annotations

import json
import os
import secrets
import time
import urllib.request
from pathlib import Path

from flywheel import names, serving_logs
from flywheel.loopback import wait_until
from monitoring.metrics import REQUESTS
from tests.support.cluster import MANIFESTS
from tests.support.servers import push_version

NAMESPACE = "flywheel-dev"
OVERLAY = MANIFESTS / "overlays" / "local"
MODEL = names.DEFAULT_MODEL_NAME
SERVING = "flywheel-serving"
SERVING_SELECTOR = "app.kubernetes.io/name=flywheel-serving"
METRICS_PORT = 9090   # the sidecar's --metrics-port in the serving Deployment
REQUESTS_TOTAL = REQUESTS + "_total"  # the counter prometheus_client exports, the adapter rule's series
POD_UID = 10001
SIDECAR_TOKEN_SECRET = "flywheel-sidecar-token"   # manifests/base/sidecar-token-secret.yaml
TRIGGER_KFP_SECRET = "flywheel-trigger-kfp"       # manifests/base/trigger-kfp-secret.yaml
# Where the trigger would find KFP; no backend is needed for the trigger to start.
PLACEHOLDER_KFP_HOST = "http://ml-pipeline.kubeflow:8888"


def chown_tree(path: Path, uid: int = POD_UID) -> None:
    for item in [path, *path.rglob("*")]:
        os.chown(item, uid, uid)


def host_claim(name: str, namespace: str, path: Path) -> list[dict]:
    """A PersistentVolume of the host folder `path` (hostPath: the node shares the host's mounts)
    and the claim `name` bound to it, ReadWriteMany, as a provisioner would give one."""
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
         "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(path), "type": "Directory"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": name,
                  "resources": {"requests": {"storage": "5Gi"}}}}]


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
    # And the feedback token `make deploy` generates when the Secret holds none.
    token = secrets.token_hex(32)
    set_secret(plane, SIDECAR_TOKEN_SECRET, token=token)
    ready_s = wait_all_ready(plane, 600, "every Deployment of the local overlay Ready")
    return {"plane": plane, "repository": repository, "applied": applied.stdout, "ready_s": ready_s, "token": token}


def set_secret(plane, name: str, **values: str) -> None:
    secret = plane.kubectl("create", "secret", "generic", name, "-n", NAMESPACE,
                           *[f"--from-literal={k}={v}" for k, v in values.items()],
                           "--dry-run=client", "-o", "yaml").stdout
    plane.kubectl("apply", "-f", "-", stdin=secret)


def set_trigger_kfp_host(plane, host: str) -> None:
    set_secret(plane, TRIGGER_KFP_SECRET, host=host, token="unused-here")   # a single-user KFP reads no token


def serving_endpoints(plane) -> set[str]:
    """The pods the serving Service sends requests to: ready endpoints of its EndpointSlices."""
    slices = json.loads(plane.kubectl("get", "endpointslices", "-n", NAMESPACE, "-l",
                                      f"kubernetes.io/service-name={SERVING}", "-o", "json").stdout)["items"]
    return {e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready") and e.get("targetRef")}


def sidecar_metric(pod: dict, name: str) -> float:
    """The sum of a metric's samples in the pod's sidecar /metrics, read on its metrics port."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:{METRICS_PORT}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)


def requests_counted(pod: dict) -> float:
    """What the pod's sidecar has counted in flywheel_requests_total."""
    return sidecar_metric(pod, REQUESTS_TOTAL)
