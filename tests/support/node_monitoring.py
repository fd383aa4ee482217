"""How the real-node tests watch the serving pods, as a cluster's monitoring stack does: a real
Prometheus (built with Kubernetes discovery, controlplane/prometheus_server.py) finds the pods
through the local overlay's ServiceMonitor and reads the containers' CPU from kubelet, and
prometheus-adapter serves both to the HPA (the manifests' custom rule, and metrics-server's
resource metrics from kubelet's numbers)."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import yaml

from controlplane import prometheus_server
from controlplane.cluster import ADMIN
from tests.support.cluster import ROOT
from tests.support.node_overlay import NAMESPACE, SERVING
from tests.support.prometheus import Prometheus, kubelet_resource_job, service_monitor_jobs

ADAPTER_VALUES = ROOT / "manifests/addons/prometheus-adapter/values.yaml"

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


def adapter_config() -> dict:
    """The manifests' custom rule as the Helm chart writes it, beside the resource rules."""
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    return {"rules": values["rules"]["custom"], "resourceRules": RESOURCE_RULES}


def service_monitor(plane) -> dict:
    return json.loads(plane.kubectl("get", "servicemonitor", SERVING, "-n", NAMESPACE, "-o", "json").stdout)


@contextmanager
def watching(plane, work: Path):
    """Prometheus on the overlay's ServiceMonitor and kubelet, and prometheus-adapter on it."""
    monitor = service_monitor(plane)
    admin = plane.clients[ADMIN]
    jobs = service_monitor_jobs(monitor, plane.kubeconfig) + [
        kubelet_resource_job(plane.kubeconfig, admin.cert, admin.key)]
    # Debian's Prometheus has no Kubernetes discovery: the one built beside the control plane.
    prometheus = Prometheus(work, {}, extra_jobs=jobs, namespace=NAMESPACE, binary=str(prometheus_server.build()))
    try:
        plane.start_prometheus_adapter(prometheus.url, adapter_config())
        yield {"prometheus": prometheus, "monitor": monitor}
    finally:
        prometheus.stop()
