"""The processes of `make loop` on loopback: the development model server, the sidecar, the
trigger, a real Prometheus and a real Alertmanager (the Debian packages), each on a free port
with its log in the loop's directory.

Prometheus loads a copy of Flywheel's rendered alert rules (monitoring/rules) with every `for:`
and range window shortened to the loop's settings (params.yaml `loop:`); the rules' expressions
are the product's own.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from flywheel import http_client, names
from flywheel.loopback import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / names.ALERT_RULES_FILE
RANGE = re.compile(r"\[(\d+[smhdwy])\]")
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


def binary(*candidates: str) -> str:
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"{candidates[0]} is not installed: run `make system-deps` (Debian packages prometheus, "
                       "prometheus-alertmanager)")


def wait_for(check, timeout_s: float, what: str, process: "Process | None" = None):
    """check()'s first truthy result (polled every 0.25 s); RuntimeError naming `what` after
    timeout_s or as soon as `process` has exited (with its log's tail)."""
    def alive():
        if process is not None and process.proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited ({process.proc.returncode}) before {what}:\n{process.tail()}")
    try:
        return wait_until(check, timeout_s, what, alive=alive,
                          detail=lambda: f"\n{process.tail()}" if process else "")
    except TimeoutError as timeout:
        raise RuntimeError(str(timeout)) from None


class Process:
    """A child process with its output in a log file; stopped by its own pid."""

    def __init__(self, name: str, command: list[str], log: Path, cwd: Path | None = None):
        self.name, self.log = name, log
        self.proc = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=cwd or ROOT,
                                     stdin=subprocess.DEVNULL)

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def python(name: str, args: list[str], log: Path) -> Process:
    return Process(name, [sys.executable, *args], log)


def shorten_rules(text: str, alert_for: str, window: str) -> str:
    """The rule file with every alert's `for:` set to `alert_for` and every range window set to `window`."""
    document = yaml.safe_load(text)
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = alert_for
            rule["expr"] = RANGE.sub(f"[{window}]", rule["expr"])
    return yaml.safe_dump(document, sort_keys=False)


class Alertmanager(Process):
    """A real Alertmanager routing every alert to one webhook URL (no clustering)."""

    def __init__(self, work: Path, webhook_url: str, group_wait_s: float = 1.0, group_interval: str = "5s",
                 repeat_interval: str = "1m"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"route": {"receiver": "flywheel-trigger", "group_by": ["alertname", "namespace", "model"],
                            "group_wait": f"{round(group_wait_s * 1000)}ms", "group_interval": group_interval,
                            "repeat_interval": repeat_interval},
                  "receivers": [{"name": "flywheel-trigger",
                                 "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}]}
        (work / "alertmanager.yml").write_text(yaml.safe_dump(config))
        super().__init__("alertmanager", [binary(*ALERTMANAGER_BINARIES), f"--config.file={work / 'alertmanager.yml'}",
                                          f"--storage.path={work / 'alertmanager-data'}",
                                          f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                                          "--log.level=warn"], work / "alertmanager.log", cwd=work)
        wait_for(lambda: http_client.get_json(f"{self.url}/api/v2/status", timeout_s=5), 30, "Alertmanager's API", self)

    def post_alerts(self, alerts: list[dict]) -> None:
        answer = http_client.post_json(f"{self.url}/api/v2/alerts", alerts, timeout_s=5)
        if not answer.ok:
            raise http_client.HttpStatusError(f"{self.url}/api/v2/alerts", answer.status, answer.body)


class Prometheus(Process):
    """A real Prometheus scraping `targets` (job -> [(address, labels)]), evaluating the loop's
    copy of the rules and sending alerts to `alertmanager`."""

    def __init__(self, work: Path, targets: dict[str, list[tuple[str, dict]]], alertmanager: str, rules: str,
                 interval_s: float = 1.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (work / "rules.yml").write_text(rules)
        interval = f"{interval_s:g}s"
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "rule_files": [str(work / "rules.yml")],
                  "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [address], "labels": labels}
                                                                           for address, labels in entries]}
                                     for job, entries in targets.items()]}
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        super().__init__("prometheus", [binary("prometheus"), f"--config.file={work / 'prometheus.yml'}",
                                        f"--storage.tsdb.path={work / 'tsdb'}",
                                        f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                         work / "prometheus.log", cwd=work)
        expected = sum(len(entries) for entries in targets.values())
        wait_for(lambda: len([t for t in self.api("/api/v1/targets")["activeTargets"] if t["health"] == "up"])
                 == expected, 60, "Prometheus scraping every target", self)

    def api(self, path: str, **params) -> dict:
        from urllib.parse import urlencode
        body = http_client.get_json(f"{self.url}{path}{'?' + urlencode(params) if params else ''}", timeout_s=5)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("/api/v1/query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]
