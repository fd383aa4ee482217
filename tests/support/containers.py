"""Helpers for tests that start containers with the local Docker engine (tests/containers, and
tests/serving's real TF Serving when TF_SERVING_IMAGE names one). Every container carries
LABELS so a session can remove what it started; published ports bind 127.0.0.1 only."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import servers

LABELS = {"flywheel.test": "containers"}

ROOT = Path(__file__).resolve().parents[2]


def load_build_module():
    """docker/build.py as a module (the docker/ folder is not a package)."""
    name = "flywheel_docker_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "docker" / "build.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def docker_client_or_skip():
    """A client of a Docker daemon that answers; skip (with the reason) where there is none."""
    try:
        import docker
    except ImportError:
        pytest.fail("the docker package is missing: `make setup` installs requirements.lock")
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as error:  # docker raises DockerException, requests' and socket errors
        pytest.skip(os.environ.get("FLYWHEEL_NO_DOCKER") or f"no Docker daemon answers ({type(error).__name__}); "
                    "`make test` installs and starts one (docker/engine.sh)")
    return client


def remove_labelled(client) -> None:
    for container in client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in LABELS.items()]}):
        container.remove(force=True)


def ensure_image(client, image: str) -> str:
    """`image` present locally: as it is, pulled, or loaded with `docker load` when it is a tar file."""
    if os.path.isfile(image):
        with open(image, "rb") as archive:
            loaded = client.images.load(archive)  # streamed, not read into memory
        return loaded[0].tags[0] if loaded and loaded[0].tags else loaded[0].id
    try:
        client.images.get(image)
    except Exception:  # docker.errors.ImageNotFound
        result = subprocess.run(["docker", "pull", "--quiet", image], capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            pytest.fail(f"cannot pull {image}: {result.stderr.strip()}")
    return image


def run_container(client, image: str, **kwargs):
    """A detached container labelled for clean-up; the caller removes it."""
    return client.containers.run(image, detach=True, labels=LABELS, **kwargs)


def published_port(container, port: str) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


def wait_http(url: str, container, timeout_s: float = 180.0, expect: int = 200) -> None:
    """Wait until `url` answers `expect`; fail with the container's log if it exits or never does."""
    def exited() -> bool:
        container.reload()
        return container.status == "exited"

    try:
        servers.wait_http(url, timeout_s, expect, gone=exited)
    except TimeoutError as error:
        raise AssertionError(f"{error}; container log:\n" + container.logs().decode(errors="replace")[-4000:])


def exec_output(container, command: list[str], user: str = "") -> tuple[int, str]:
    result = container.exec_run(command, user=user)
    return result.exit_code, result.output.decode(errors="replace")


def world_readable(path: Path) -> Path:
    """Make a host tree readable by a container's non-root user (pytest's temporary folders are 0700)."""
    for item in [path, *path.rglob("*")]:
        item.chmod(item.stat().st_mode | (0o555 if item.is_dir() else 0o444))
    return path
