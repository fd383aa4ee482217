"""`kubectl apply -k manifests/overlays/local` on the kubelet node: every Deployment becomes Ready
with its real probes, security contexts and volumes, and predictions sent to the Service's
ClusterIP go through the sidecar to the model server (the development model server standing in
for TF Serving in this overlay) and land in the prediction log on the pod's log volume.

The model repository claim binds to a hostPath PersistentVolume holding one version trained and
pushed by the pipeline's own steps (tests/conftest.py), owned by the pods' UID as a storage
admin would provision it.
"""
from __future__ import annotations

import json
import urllib.request

from flywheel import names
from flywheel.loopback import wait_until
from tests.support.cluster import ROOT
from tests.support.node_overlay import MODEL, NAMESPACE, deployments, service_url
from tests.support.taxi_rows import make_frame, rows_of

ROWS = rows_of(make_frame(60, seed=5))
REPORT = ROOT / "build" / "node" / "get-pods.txt"


def test_every_deployment_of_the_local_overlay_becomes_ready(deployed):
    plane = deployed["plane"]
    items = deployments(plane)
    assert {d["metadata"]["name"] for d in items} == {"flywheel-serving", "flywheel-trigger"}
    pods = json.loads(plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    for pod in pods:
        for status in pod["status"]["containerStatuses"]:
            assert status["ready"] and "running" in status["state"], (pod["metadata"]["name"], status)
    serving = next(p for p in pods if p["metadata"]["labels"]["app.kubernetes.io/name"] == "flywheel-serving")
    images = {c["name"]: c["image"] for c in serving["spec"]["containers"]}
    assert images == {"tf-serving": names.COMPONENT_IMAGE, "sidecar": names.SIDECAR_IMAGE}
    assert "devserver" in serving["metadata"]["annotations"]["flywheel.io/tf-serving-stand-in"]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    listing = plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout
    REPORT.write_text(f"$ kubectl get pods -n {NAMESPACE} -o wide\n{listing}"
                      f"(every Deployment Ready {deployed['ready_s']:.0f} s after `kubectl apply -k`)\n")


def post(url: str, payload: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read()), dict(response.headers)


def test_predictions_through_the_service_reach_the_sidecar_and_the_model_server(deployed):
    plane = deployed["plane"]
    url = f"{service_url(plane)}/v1/models/{MODEL}:predict"
    status, body, headers = wait_until(lambda: post(url, {"instances": ROWS[:10]}), 60, f"a prediction from {url}")
    assert status == 200 and headers.get("X-Request-Id")  # the sidecar's header
    assert len(body["predictions"]) == 10 and all(0.0 <= p <= 1.0 for p in body["predictions"])
    for start in range(10, len(ROWS), 10):
        assert post(url, {"instances": ROWS[start:start + 10]})[0] == 200
    # Every row is in the prediction log on the sidecar's log volume (an emptyDir on the node).
    pod = plane.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=flywheel-serving",
                        "-o", "jsonpath={.items[0].metadata.name}").stdout

    def logged_rows() -> int:
        out = plane.kubectl("exec", "-n", NAMESPACE, pod, "-c", "sidecar", "--", "python3", "-c",
                            "import glob, json; print(sum(len(json.loads(line)['features'])"
                            " for path in glob.glob('/var/log/flywheel/*.jsonl') for line in open(path)))").stdout
        return int(out.strip()) >= len(ROWS)
    wait_until(logged_rows, 30, f"{len(ROWS)} rows in the prediction log")
