"""One control plane for the tests in this folder (session-scoped), built from Go modules.

The binaries come from the cache (`python -m controlplane build`); `make test` starts that build
in the background before pytest, and these tests run last so the rest of the suite runs while it
compiles. The cluster gets prometheus-operator's ServiceMonitor and PrometheusRule CRDs and Argo's
WorkflowTaskResult CRD, read from their Go modules, as a kube-prometheus-stack + Kubeflow cluster
has them. `kfp_compile` is KFP's API server code as a command, built by the same background build
after the control plane. The terminal summary prints the build and per-stage times.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from controlplane import build, kfp
from controlplane.cluster import ControlPlane
from tests.support.cluster import MANIFESTS, OVERLAYS, kustomize_build

HERE = Path(__file__).resolve().parent

# The HPA controller's sync period: Kubernetes' default is 15 s; 5 s lets the HPA test watch
# scale decisions follow the metric closely without changing what the decisions are.
HPA_SYNC_PERIOD_S = 5
BUILD_TIMEOUT_S = 3600
TIMES: dict[str, float] = {}


def pytest_collection_modifyitems(session, config, items):
    """Run this folder's tests after everything else (they wait for the control-plane build)."""
    mine = [i for i in items if HERE in Path(str(i.fspath)).parents]
    if mine:
        TIMES["collected"] = len(mine)
        TIMES["suite_started"] = time.monotonic()
        for item in mine:
            item.add_marker(pytest.mark.slow)
        items[:] = [i for i in items if i not in mine] + mine
        # The first one waits for the build (a cold one: 8 min on 2 idle cores, 33 min on 2 busy
        # ones), longer than the suite's per-test timeout.
        mine[0].add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S))
        # So does the first to use KFP's compiler (built after the control plane).
        first_kfp = next((i for i in mine if "kfp_compile" in getattr(i, "fixturenames", ())), None)
        if first_kfp is not None:
            first_kfp.add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S))


def terminal_say(pytestconfig):
    """A function that prints a progress line on the terminal, past pytest's output capture."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        reporter.ensure_newline()
        reporter.write_line(line)
    return say


@pytest.fixture(scope="session")
def plane(tmp_path_factory, pytestconfig):
    started = TIMES["fixture_started"] = time.monotonic()
    say = terminal_say(pytestconfig)
    bin_dir = build.build(say=say)
    TIMES["waited_for_build_s"] = time.monotonic() - started
    TIMES["build"] = build.built() or {}
    TIMES["tests_started"] = time.monotonic()
    cluster = ControlPlane(tmp_path_factory.mktemp("controlplane"), bin_dir, hpa_sync_period_s=HPA_SYNC_PERIOD_S,
                           say=say)
    up = time.monotonic()
    cluster.start()
    try:
        TIMES["up_s"] = time.monotonic() - up
        yield cluster
    finally:
        cluster.stop()
        TIMES["tests_s"] = time.monotonic() - TIMES["tests_started"]


@pytest.fixture(scope="session")
def kfp_compile(pytestconfig) -> Path:
    """KFP's API server code as a command (controlplane/kfp.py), built or reused."""
    started = time.monotonic()
    path = kfp.build(say=terminal_say(pytestconfig))
    TIMES["waited_for_kfp_s"] = time.monotonic() - started
    TIMES["kfp_build"] = kfp.built() or {}
    return path


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """overlay name -> rendered objects (`kubectl kustomize`, as `make deploy` renders them)."""
    return {name: kustomize_build(MANIFESTS / "overlays" / name) for name in OVERLAYS}


def pytest_terminal_summary(terminalreporter):
    if "tests_s" not in TIMES:
        return
    built = TIMES["build"]
    ago = (time.time() - built["finished"]) / 60 if "finished" in built else float("nan")
    rest = (TIMES["fixture_started"] - TIMES["suite_started"]) / 60 if "suite_started" in TIMES else float("nan")
    terminalreporter.write_sep("-", "control plane")
    terminalreporter.write_line(
        f"Kubernetes {built.get('kubernetes', '?')} binaries: built {ago:.0f} min ago in "
        f"{built.get('seconds', float('nan')) / 60:.1f} min ({built.get('download_seconds', float('nan')):.0f} s "
        f"of it downloading modules; {built.get('cpu_seconds', float('nan')) / 60:.0f} CPU-min)")
    if "kfp_build" in TIMES:
        kfp_built = TIMES["kfp_build"]
        terminalreporter.write_line(
            f"KFP's compiler: built {(time.time() - kfp_built.get('finished', float('nan'))) / 60:.0f} min ago in "
            f"{kfp_built.get('seconds', float('nan')) / 60:.1f} min ({kfp_built.get('cpu_seconds', float('nan')) / 60:.0f} "
            f"CPU-min); waited for it {TIMES['waited_for_kfp_s'] / 60:.1f} min")
    terminalreporter.write_line(
        f"stages: rest of the suite {rest:.1f} min | waited for the build {TIMES['waited_for_build_s'] / 60:.1f} min | "
        f"cluster up {TIMES['up_s']:.0f} s | {TIMES['collected']} control-plane tests {TIMES['tests_s'] / 60:.1f} min")
