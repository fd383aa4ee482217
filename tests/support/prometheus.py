"""A real Prometheus (the Debian package, or another `binary`: the real-node tests run one built
with Kubernetes discovery, controlplane/prometheus_server.py) on a loopback port, scraping sidecars
with the labels the ServiceMonitor gives them, with Flywheel's rule file loaded."""
from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from flywheel import loopback, names
from tests.support.cluster import ROOT, require_tool
from tests.support.net import free_port, wait_until

RULES = ROOT / names.ALERT_RULES_FILE
JOB = "flywheel-serving-metrics"


class Prometheus:
    def __init__(self, work: Path, targets: dict[str, str], scrape_s: float = 1.0, extra_jobs: list | None = None,
                 namespace: str = "flywheel", binary: str | None = None):
        """targets: pod name -> host:port of a sidecar's /metrics; extra_jobs: more scrape configs."""
        if binary is None:
            require_tool("prometheus", "run `make system-deps` (Debian package prometheus)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        interval = f"{scrape_s:g}s"
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "rule_files": [str(RULES)],
                  "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics", "static_configs": [
                      {"targets": [address], "labels": {"namespace": namespace, "pod": pod, "service": JOB,
                                                        "endpoint": "metrics"}}
                      for pod, address in targets.items()]}] + (extra_jobs or [])}
        (work / "prometheus.yml").write_text(json.dumps(config))
        self.log = work / "prometheus.log"
        self.proc = subprocess.Popen([binary or "prometheus", f"--config.file={work / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
                                      "--log.level=warn"], cwd=work, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        # Discovered targets (kubernetes_sd) come and go with the pods; the caller waits for those.
        static = len(targets) + sum(len(c["targets"]) for j in (extra_jobs or []) for c in j.get("static_configs", []))
        self.wait_until(lambda: len([t for t in self.targets() if t["health"] == "up"]) >= static,
                        60, "Prometheus scraping every target")

    def _get(self, path: str, params: dict) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets", {})["activeTargets"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """[{metric: labels, value: float}]"""
        params = {"query": expr, **({"time": at} if at is not None else {})}
        return [{"metric": s["metric"], "value": float(s["value"][1])} for s in self._get("/api/v1/query", params)["result"]]

    def wait_until(self, check, timeout_s: float, what: str):
        return wait_until(check, timeout_s, what, lambda: "; Prometheus' log:\n" + (
            self.log.read_text()[-2000:] if self.log.exists() else ""))

    def stop(self) -> None:
        loopback.stop(self.proc)


def service_monitor_jobs(monitor: dict, kubeconfig: Path) -> list[dict]:
    """The scrape jobs the Prometheus operator generates for a ServiceMonitor: one per endpoint,
    EndpointSlice discovery in the monitor's namespace (or its namespaceSelector's names), kept
    when the Service's labels match the selector and the port's name is the endpoint's, labelled
    namespace / service / pod / container / endpoint as the operator labels them. Prometheus
    reads the cluster with `kubeconfig` (on a cluster: its service account)."""
    namespace = monitor["metadata"]["namespace"]
    names = monitor["spec"].get("namespaceSelector", {}).get("matchNames") or [namespace]
    selector = monitor["spec"]["selector"].get("matchLabels", {})
    jobs = []
    for i, endpoint in enumerate(monitor["spec"]["endpoints"]):
        keep = [{"action": "keep", "source_labels": [f"__meta_kubernetes_service_label_{_sanitize(k)}",
                                                      f"__meta_kubernetes_service_labelpresent_{_sanitize(k)}"],
                 "regex": f"({v});true"} for k, v in selector.items()]
        keep.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                     "regex": endpoint["port"]})
        labels = [{"source_labels": [source], "target_label": target} for source, target in (
            ("__meta_kubernetes_namespace", "namespace"), ("__meta_kubernetes_service_name", "service"),
            ("__meta_kubernetes_pod_name", "pod"), ("__meta_kubernetes_pod_container_name", "container"),
            ("__meta_kubernetes_service_name", "job"))]
        labels.append({"target_label": "endpoint", "replacement": endpoint["port"]})
        jobs.append({
            "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{i}",
            "metrics_path": endpoint.get("path", "/metrics"),
            "scrape_interval": endpoint.get("interval", "30s"), "scrape_timeout": endpoint.get("scrapeTimeout", "10s"),
            "kubernetes_sd_configs": [{"role": "endpointslice", "kubeconfig_file": str(kubeconfig),
                                       "namespaces": {"names": names}}],
            "relabel_configs": keep + labels})
    return jobs


def kubelet_resource_job(kubeconfig: Path, cert: Path, key: Path, interval: str = "15s") -> dict:
    """Every node's kubelet /metrics/resource (container CPU and memory, what metrics-server
    reads), over HTTPS with a client certificate; kubelet's own serving certificate is
    self-signed, so it is not verified (kube-prometheus' kubelet monitor does the same)."""
    return {"job_name": "kubelet-resource", "scheme": "https", "metrics_path": "/metrics/resource",
            "scrape_interval": interval, "honor_timestamps": True,
            "tls_config": {"cert_file": str(cert), "key_file": str(key), "insecure_skip_verify": True},
            "kubernetes_sd_configs": [{"role": "node", "kubeconfig_file": str(kubeconfig)}],
            "relabel_configs": [{"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"}]}


def _sanitize(label: str) -> str:
    """A Kubernetes label name as a Prometheus meta label suffix."""
    return "".join(c if c.isalnum() else "_" for c in label)
