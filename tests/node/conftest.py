"""Real pods: a control plane with one kubelet node (controlplane/node.py) and no kwok nodes, so
every pod these tests create runs its containers under containerd and runc.

The node needs root, network namespaces, containerd, runc, the CNI plugins and a Docker engine
holding Flywheel's images (`make test` provides all of them here); where the machine lacks one,
the tests skip naming exactly what is missing. They run after the rest of the suite, as the
control-plane tests do, since they wait for the same background build. The terminal summary
prints the node's set-up time and the tests' time.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlplane import argo, build, kfp, modules, prometheus_server
from controlplane.cluster import ControlPlane
from controlplane.node import HOST_IP, Node, missing_requirements
from flywheel import names
from tests.support.containers import ROOT
from tests.support.node_monitoring import watching
from tests.support.node_overlay import deploy

HERE = Path(__file__).resolve().parent
BUILD_TIMEOUT_S = 3600
HPA_SYNC_PERIOD_S = 5
IMAGES = (names.SIDECAR_IMAGE, names.COMPONENT_IMAGE)
TIMES: dict[str, float] = {}


def pytest_collection_modifyitems(session, config, items):
    mine = [i for i in items if HERE in Path(str(i.fspath)).parents]
    if mine:
        items[:] = [i for i in items if i not in mine] + mine
        for item in mine:
            item.add_marker(pytest.mark.slow)
        # The first waits for the control-plane build and the images.
        mine[0].add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S))


def _say(pytestconfig):
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        reporter.ensure_newline()
        reporter.write_line(line)
    return say


def _build_images() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "docker" / "build.py"), "component", "sidecar"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"docker/build.py failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, pytestconfig):
    """(control plane, node): the API server on the node's link, kubelet Ready."""
    missing = missing_requirements()
    if os.environ.get("FLYWHEEL_NO_DOCKER"):
        missing.append(os.environ["FLYWHEEL_NO_DOCKER"] + " (the node imports Flywheel's images from Docker)")
    if missing:
        pytest.skip("no kubelet node on this machine: " + "; ".join(missing))
    say = _say(pytestconfig)
    started = time.monotonic()
    bin_dir = build.build(say=say)
    prometheus_server.build(say=say)   # the monitoring tests' Prometheus, with Kubernetes discovery
    _build_images()
    TIMES["waited_s"] = time.monotonic() - started
    run_dir = tmp_path_factory.mktemp("node")
    node = Node(run_dir / "node")
    plane = ControlPlane(run_dir / "controlplane", bin_dir, hpa_sync_period_s=HPA_SYNC_PERIOD_S, address=HOST_IP,
                         say=say)
    up = time.monotonic()
    try:
        node.open()
        # No kwok nodes, and no NFS volumes: claims bind to what the tests provide on the node.
        plane.start(nodes=(), volumes=0)
        node.start(plane, images=IMAGES)
        TIMES["up_s"] = time.monotonic() - up
        TIMES.update({f"node_{k}": v for k, v in node.times.items()})
        TIMES["tests_started"] = time.monotonic()
        yield plane, node
    finally:
        node.stop()
        plane.stop()
        if "tests_started" in TIMES:
            TIMES["tests_s"] = TIMES.get("tests_ended", time.monotonic()) - TIMES["tests_started"]


@pytest.fixture(scope="session")
def kfp_backend(cluster, tmp_path_factory) -> dict[str, str]:
    """Kubeflow Pipelines for the node's runs, in the namespace `kfp.NAMESPACE`: KFP's API server (with
    MariaDB and moto), ML Metadata's service and Argo's controller on the host, the persistence
    agent in a pod, the driver and launcher images imported (controlplane/kfp.py). Returns the
    API's endpoint ("host"), ML Metadata's ("mlmd", host:port) and the object store's ("s3"), all
    on the host's link address."""
    plane, node = cluster
    images = tmp_path_factory.mktemp("kfp-images")
    for archive in [*kfp.image_archives(images), argo.executor_archive(images)]:
        node.import_archive(archive)
    plane.install_crds([modules.kfp_scheduledworkflow_crd(kfp.MODULE / "go.mod")])
    plane.start_argo_controller(argo.build(say=plane.say), kfp.NAMESPACE, argo.EXECUTOR_IMAGE)
    mlmd = plane.start_mlmd_service(kfp.MLMD_PYTHON, HOST_IP)
    host = plane.start_kfp_api_server(kfp.binary_path(kfp.API_SERVER), kfp.NAMESPACE, HOST_IP,
                                      v2_images=(kfp.DRIVER_IMAGE, kfp.LAUNCHER_IMAGE))
    kfp.connect_runs(plane, kfp.NAMESPACE, mlmd)
    return {"host": host, "mlmd": mlmd, "s3": f"http://{HOST_IP}:{plane.ports['kfp-s3']}"}


@pytest.fixture(scope="session")
def deployed(cluster, exported_versions, tmp_path_factory):
    """The local overlay applied on the node (tests/support/node_overlay.py), every Deployment
    Ready; the tests that load it run after the ones that only read it (file order)."""
    plane, node = cluster
    repository = tmp_path_factory.mktemp("local-overlay") / "model-repository"
    return {**deploy(plane, repository, exported_versions), "node": node, "exported": exported_versions}


@pytest.fixture(scope="session")
def monitored(deployed, tmp_path_factory):
    """The deployed overlay watched by Prometheus and prometheus-adapter, as the HPA needs it."""
    with watching(deployed["plane"], tmp_path_factory.mktemp("monitoring")) as watch:
        yield {**watch, "plane": deployed["plane"], "deployed": deployed}


def pytest_runtest_logreport(report):
    """The end of the last real-pod test (this hook sees only tests/node's): the control-plane
    tests may run after them in the same session, with the node still up."""
    if report.when == "teardown" and "tests_started" in TIMES:
        TIMES["tests_ended"] = time.monotonic()


def pytest_terminal_summary(terminalreporter):
    if "tests_s" not in TIMES:
        return
    terminalreporter.write_sep("-", "kubelet node")
    terminalreporter.write_line(
        f"stages: waited for the build and images {TIMES['waited_s'] / 60:.1f} min | control plane + node up "
        f"{TIMES['up_s']:.0f} s (images imported {TIMES.get('node_images_s', 0):.0f} s) | real-pod tests "
        f"{TIMES['tests_s'] / 60:.1f} min")
