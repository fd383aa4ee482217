"""A real Prometheus (the Debian package) on a loopback port, scraping sidecars with the labels
the ServiceMonitor gives them, with Flywheel's rule file loaded."""
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
                 namespace: str = "flywheel"):
        """targets: pod name -> host:port of a sidecar's /metrics; extra_jobs: more scrape configs."""
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
        self.proc = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
                                      "--log.level=warn"], cwd=work, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.wait_until(lambda: len(self.targets()) == len(targets) + sum(len(j["static_configs"][0]["targets"])
                                                                          for j in (extra_jobs or []))
                        and all(t["health"] == "up" for t in self.targets()), 60, "Prometheus scraping every target")

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
