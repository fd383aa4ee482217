"""The local overlay's serving Deployment on the kubelet node, watched the way a cluster watches
it (tests/support/node_monitoring.py): Prometheus finds the pods through the overlay's
ServiceMonitor (EndpointSlice discovery, as the Prometheus operator configures it) and reads the
containers' CPU from kubelet; prometheus-adapter serves both to the HPA.
"""
from __future__ import annotations

import json
import urllib.request

from flywheel import serving_protocol
from flywheel.loopback import wait_until
from tests.support.hpa import METRIC
from tests.support.node_overlay import MODEL, NAMESPACE, REQUESTS_TOTAL, SERVING, pods, service_url
from tests.support.prometheus import Prometheus
from tests.support.taxi_rows import make_frame, rows_of

BODY = json.dumps({"instances": rows_of(make_frame(1, seed=7))}).encode()


def discovered(prometheus: Prometheus, job_prefix: str) -> list[dict]:
    return [t for t in prometheus.targets() if t["labels"]["job"] != "kubelet-resource"
            and t["scrapePool"].startswith(job_prefix)]


def test_prometheus_finds_every_serving_pod_through_the_service_monitor(monitored):
    plane, prometheus, monitor = monitored["plane"], monitored["prometheus"], monitored["monitor"]
    url = service_url(plane) + serving_protocol.predict_path(MODEL)
    for _ in range(5):
        request = urllib.request.Request(url, data=BODY, headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(request, timeout=30).status == 200
    names = {p["metadata"]["name"] for p in pods(plane)}
    pool = f"serviceMonitor/{NAMESPACE}/{SERVING}/"
    # One target per pod and ServiceMonitor endpoint (the sidecar's /metrics, the model server's
    # TF Serving metrics), every one scraped.
    prometheus.wait_until(lambda: len(discovered(prometheus, pool)) == len(names) * len(monitor["spec"]["endpoints"])
                          and all(t["health"] == "up" for t in discovered(prometheus, pool)), 90,
                          "every serving pod's endpoints discovered and up")
    targets = discovered(prometheus, pool)
    assert {t["labels"]["pod"] for t in targets} == names
    assert {t["labels"]["endpoint"] for t in targets} == {e["port"] for e in monitor["spec"]["endpoints"]}
    assert {t["labels"]["namespace"] for t in targets} == {NAMESPACE}
    requests = REQUESTS_TOTAL
    counted = prometheus.wait_until(lambda: prometheus.query(f'sum by (pod) ({requests}{{namespace="{NAMESPACE}"}})')
                                    or None, 60, f"{requests} in Prometheus")
    assert {s["metric"]["pod"] for s in counted} == names and sum(s["value"] for s in counted) >= 5
    # What the HPA reads: the custom metric through prometheus-adapter, and the containers' CPU
    # from kubelet (`kubectl top`), both through the aggregation layer.
    custom = wait_until(lambda: json.loads(plane.kubectl(
        "get", "--raw", f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/{METRIC}",
        check=False).stdout or "{}").get("items"), 90, f"{METRIC} from the custom metrics API")
    assert {item["describedObject"]["name"] for item in custom} == names
    top = wait_until(lambda: (lambda r: r.stdout if r.returncode == 0 else None)(plane.kubectl(
        "top", "pods", "-n", NAMESPACE, "--containers", check=False)), 120, "kubectl top pods")
    assert "sidecar" in top and "tf-serving" in top
