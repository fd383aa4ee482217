"""Helpers shared by the cluster checks: rendered overlays, required tools, metric names."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("dev", "prod", "gpu")
# The Kubernetes version the manifests are written and validated for (kubernetes-validate).
KUBERNETES_VERSION = "1.32.0"
KUSTOMIZE = ["kubectl", "kustomize"]


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: {hint}")
    return path


def kustomize_build(path: Path) -> list[dict]:
    require_tool("kubectl", "the machine image provides kubectl with kustomize v5")
    result = subprocess.run([*KUSTOMIZE, str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {path.relative_to(ROOT)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def containers(deployment: dict) -> dict[str, dict]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def sidecar_metric_names() -> set[str]:
    """Metric names the sidecar exports, read from monitoring/metrics.py and the release router
    (monitoring/routing.py) on a fresh registry (counters as `<name>_total`; histograms by their
    base name)."""
    from prometheus_client import CollectorRegistry

    from flywheel.params import ReleaseParams
    from monitoring.metrics import SidecarMetrics
    from monitoring.routing import Router

    registry = CollectorRegistry()
    SidecarMetrics("contract", registry).watch(lambda: {})
    Router(ReleaseParams(), "", "contract", registry)
    return {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (flywheel_*, recorded flywheel:* and up), histogram
    suffixes stripped."""
    import re
    used = set(re.findall(r"(?<![\w:])(flywheel:[a-z_:]+|flywheel_[a-z_]+|up)\b(?=\s*[\{\[)<>=!*/+-]|\s*$|\s*\n)",
                          expr))
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
