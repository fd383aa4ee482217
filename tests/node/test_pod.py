"""One pod of the sidecar image on the kubelet node: kubelet starts it under containerd with the
serving pod's security settings (UID 10001, read-only root, no capabilities, RuntimeDefault
seccomp) in a namespace enforcing the "restricted" Pod Security level, its probes pass, and it
answers on its pod IP and through a ClusterIP Service (kube-proxy's rules on the node)."""
from __future__ import annotations

import ipaddress
import json
import urllib.request

from controlplane.node import NODE_IP, NODE_NAME, POD_SUBNET
from flywheel import names
from flywheel.loopback import wait_until

NAMESPACE = "node-pod"
LABELS = {"app.kubernetes.io/name": "sidecar-alone"}
SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def objects() -> list[dict]:
    probe = {"httpGet": {"path": "/healthz/live", "port": 8080}, "periodSeconds": 2}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sidecar", "namespace": NAMESPACE, "labels": LABELS},
         "spec": {
             "automountServiceAccountToken": False,
             "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
             "containers": [{
                 # The image's own entrypoint and arguments; no model server in this pod, so the
                 # probes ask whether it lives, not whether it can serve.
                 "name": "sidecar", "image": names.SIDECAR_IMAGE, "imagePullPolicy": "Never",
                 "ports": [{"containerPort": 8080}], "readinessProbe": probe, "livenessProbe": probe,
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                               "limits": {"cpu": "1", "memory": "512Mi"}},
                 "securityContext": SECURITY,
                 "volumeMounts": [{"name": n, "mountPath": p} for n, p in
                                  (("tmp", "/tmp"), ("log", "/var/log/flywheel"), ("models", "/models"))]}],
             "volumes": [{"name": n, "emptyDir": {}} for n in ("tmp", "log", "models")]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sidecar", "namespace": NAMESPACE},
         "spec": {"selector": LABELS, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]


def pod_status(plane) -> dict:
    return json.loads(plane.kubectl("get", "pod", "sidecar", "-n", NAMESPACE, "-o", "json").stdout)["status"]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_a_sidecar_pod_runs_on_the_real_node_and_answers_through_its_service(cluster):
    plane, node = cluster
    plane.apply(objects())
    wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "True"
                           for c in pod_status(plane).get("conditions", [])),
               300, "the sidecar pod Ready (kubelet's report)",
               detail=lambda: f"\n{json.dumps(pod_status(plane), indent=1)[-3000:]}\n{node.log_tail('kubelet', 15)}")
    status = pod_status(plane)
    pod = json.loads(plane.kubectl("get", "pod", "sidecar", "-n", NAMESPACE, "-o", "json").stdout)
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert status["hostIP"] == NODE_IP
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(POD_SUBNET)
    (container,) = status["containerStatuses"]
    assert container["ready"] and "running" in container["state"]
    # The image containerd runs is the one Docker built, digest and all.
    assert container["imageID"].startswith("sha256:") or "@sha256:" in container["imageID"]

    # The process really runs as the image's user, on a read-only root, with writable emptyDirs.
    identity = plane.kubectl("exec", "-n", NAMESPACE, "sidecar", "--", "id", "-u").stdout.strip()
    assert identity == "10001"
    refused = plane.kubectl("exec", "-n", NAMESPACE, "sidecar", "--", "touch", "/probe", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert plane.kubectl("exec", "-n", NAMESPACE, "sidecar", "--", "touch", "/var/log/flywheel/probe",
                         check=False).returncode == 0

    assert get(f"http://{status['podIP']}:8080/healthz/live")[0] == 200
    service = json.loads(plane.kubectl("get", "service", "sidecar", "-n", NAMESPACE, "-o", "json").stdout)
    cluster_ip = service["spec"]["clusterIP"]
    # kube-proxy programs the Service once the pod is an endpoint: ask until it answers.
    code, _ = wait_until(lambda: get(f"http://{cluster_ip}/healthz/live"), 60, f"the Service {cluster_ip}:80")
    assert code == 200
