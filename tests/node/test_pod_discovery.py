"""The local overlay's serving Deployment on the kubelet node, watched the way a cluster watches
it: a real Prometheus (built with Kubernetes discovery, controlplane/prometheus_server.py) finds
the pods through the overlay's ServiceMonitor (EndpointSlice discovery, as the Prometheus operator
configures it) and reads the containers' CPU from kubelet; prometheus-adapter serves both to the
HPA (the manifests' rule, and metrics-server's resource metrics from kubelet's numbers).
"""
from __future__ import annotations

import json
import urllib.request

import pytest

from controlplane import prometheus_server
from controlplane.cluster import ADMIN
from flywheel import serving_protocol
from flywheel.loopback import wait_until
from monitoring.metrics import REQUESTS
from tests.support.node_overlay import MODEL, NAMESPACE, SERVING, pods, service_url
from tests.support.prometheus import Prometheus, kubelet_resource_job, service_monitor_jobs
from tests.support.taxi_rows import make_frame, rows_of

ADAPTER_RULES = "manifests/addons/prometheus-adapter/values.yaml"
METRIC = "flywheel_requests_per_second"
REQUESTS_TOTAL = REQUESTS + "_total"  # the counter prometheus_client exports, the adapter rule's series
BODY = json.dumps({"instances": rows_of(make_frame(1, seed=7))}).encode()

# metrics-server's resource metrics from kubelet's /metrics/resource, as kube-prometheus
# configures prometheus-adapter to serve them.
_OVERRIDES = {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}, "node": {"resource": "node"}}
RESOURCE_RULES = {
    "cpu": {"containerQuery": 'sum by (<<.GroupBy>>) (irate(container_cpu_usage_seconds_total'
                              '{<<.LabelMatchers>>,container!="",pod!=""}[1m]))',
            "nodeQuery": "sum by (<<.GroupBy>>) (irate(node_cpu_usage_seconds_total{<<.LabelMatchers>>}[1m]))",
            "resources": {"overrides": _OVERRIDES}, "containerLabel": "container"},
    "memory": {"containerQuery": 'sum by (<<.GroupBy>>) (container_memory_working_set_bytes'
                                 '{<<.LabelMatchers>>,container!="",pod!=""})',
               "nodeQuery": "sum by (<<.GroupBy>>) (node_memory_working_set_bytes{<<.LabelMatchers>>})",
               "resources": {"overrides": _OVERRIDES}, "containerLabel": "container"},
    "window": "1m",
}


def kubectl_json(plane, *args: str) -> dict:
    return json.loads(plane.kubectl(*args, "-n", NAMESPACE, "-o", "json").stdout)


def adapter_config() -> dict:
    import yaml
    from tests.support.cluster import ROOT

    values = yaml.safe_load((ROOT / ADAPTER_RULES).read_text())
    return {"rules": values["rules"]["custom"], "resourceRules": RESOURCE_RULES}


@pytest.fixture(scope="module")
def monitored(deployed, tmp_path_factory):
    plane = deployed["plane"]
    work = tmp_path_factory.mktemp("monitoring")
    monitor = kubectl_json(plane, "get", "servicemonitor", SERVING)
    admin = plane.clients[ADMIN]
    jobs = service_monitor_jobs(monitor, plane.kubeconfig) + [
        kubelet_resource_job(plane.kubeconfig, admin.cert, admin.key)]
    # Debian's Prometheus has no Kubernetes discovery: the one built beside the control plane.
    prometheus = Prometheus(work, {}, extra_jobs=jobs, namespace=NAMESPACE, binary=str(prometheus_server.build()))
    try:
        plane.start_prometheus_adapter(prometheus.url, adapter_config())
        yield {"plane": plane, "prometheus": prometheus, "monitor": monitor, "deployed": deployed}
    finally:
        prometheus.stop()


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
