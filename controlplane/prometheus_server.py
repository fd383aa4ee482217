"""Prometheus with Kubernetes service discovery, built from its Go module (prometheus/).

Debian's `prometheus` package (what the other tests run) is built without Kubernetes service
discovery (`kubernetes_sd_configs` is an unknown field there), so the real-node tests, which find
the pods the way the Prometheus operator's ServiceMonitors do, run this one. It is built with
Prometheus' own build tags `remove_all_sd,enable_kubernetes_sd`: Kubernetes discovery only, a
third of the packages. The binary sits in `<cache>/prometheus/bin/<key>/`, keyed on what decides
it, as the control plane's do.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from controlplane.build import STAMP, _list_packages, _print, _run_go, build_keyed, cache_dir, go_binary, go_env

MODULE = Path(__file__).resolve().parent / "prometheus"
PACKAGE = "github.com/prometheus/prometheus/cmd/prometheus"
TAGS = "remove_all_sd,enable_kubernetes_sd"
BINARY = "prometheus"


def build_key(go: str) -> str:
    digest = hashlib.sha256()
    for path in (MODULE / "go.mod", MODULE / "go.sum"):
        digest.update(path.read_bytes())
    digest.update(subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.encode())
    digest.update(TAGS.encode())
    return digest.hexdigest()[:16]


def binary_path() -> Path:
    return cache_dir() / "prometheus" / "bin" / build_key(go_binary()) / BINARY


def built() -> dict | None:
    stamp = binary_path().parent / STAMP
    return json.loads(stamp.read_text()) if stamp.exists() else None


def build(say=_print) -> Path:
    """Return the path of the binary, building it first when missing."""
    target = binary_path()
    env = go_env(cache_dir())  # the control plane's module and build caches
    cache = cache_dir() / "prometheus"

    def steps(staging: Path, log) -> None:
        say(f"[prometheus] building Prometheus with Kubernetes discovery into {target.parent} "
            f"(log: {cache / 'build.log'})")
        packages = _list_packages(MODULE, env, ["-tags", TAGS, PACKAGE], log)
        _run_go(["build", "-v", "-tags", TAGS, "-ldflags", "-s -w", "-o", str(staging / BINARY), PACKAGE],
                MODULE, env, log, say, "[prometheus] compiling", packages)

    cache.mkdir(parents=True, exist_ok=True)
    build_keyed(target.parent, cache, "prometheus", steps, say)
    return target
