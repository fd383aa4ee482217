"""What the built images are, read from the engine (`docker image inspect`) and from inside them:
user, entry point, labels, exposed ports; no build tools, sources or tests;
and a build context that carries only what the Dockerfile installs (Docker's own .dockerignore
handling, on the real repository)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from flywheel import names
from tests.support.containers import exec_output, run_container

from tests.support.containers import ROOT, load_build_module

# Top-level entries of the installed project wheel: pyproject's packages (with devserver/, which
# infra validation starts; tests/ is not among them), its metadata, and the `flywheel` console
# script (bin/, reached as ../../../bin).
PROJECT_PACKAGES = {"..", "components", "devserver", "flywheel", "flywheel-0.1.0.dist-info", "flywheel_cli", "monitoring",
                    "pipelines", "serving", "trigger"}


def inspect(docker_client, image: str) -> dict:
    return docker_client.images.get(image).attrs["Config"]


def test_images_record_the_revision_they_were_built_from(docker_client, images):
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert sha, "the checkout is a git repository"
    for image in images.values():
        config = inspect(docker_client, image)
        assert f"FLYWHEEL_GIT_SHA={sha}" in config["Env"]
        assert config["Labels"]["org.opencontainers.image.revision"] == sha


def test_component_image_config(docker_client, images):
    config = inspect(docker_client, images["component"])
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.title"] == "flywheel-component"
    assert not config.get("ExposedPorts")
    assert config["Env"] and next(e for e in config["Env"] if e.startswith("PATH=")).startswith("PATH=/opt/venv/bin:")
    assert config["Healthcheck"]["Test"] == ["NONE"]
    # KFP replaces the entry point with the component's own command: the image must not set one.
    assert not config.get("Entrypoint")


def test_sidecar_image_config_matches_the_serving_pod(docker_client, images):
    config = inspect(docker_client, images["sidecar"])
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.title"] == "flywheel-sidecar"
    assert set(config["ExposedPorts"]) == {"8080/tcp"}
    assert config["Entrypoint"] == ["python3", "-m", "monitoring"]
    assert config["Cmd"][:4] == ["--port", "8080", "--upstream", "http://127.0.0.1:8501"]
    assert "/healthz/live" in " ".join(config["Healthcheck"]["Test"])
    deployment = yaml.safe_load((ROOT / "manifests/base/serving-deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "sidecar")
    assert sidecar["image"] == names.SIDECAR_IMAGE == images["sidecar"]
    assert sidecar["command"] == config["Entrypoint"]
    # The image serves everything on 8080; the pod gives feedback and metrics ports of their own.
    assert {p["name"]: p["containerPort"] for p in sidecar["ports"]}["http"] == 8080
    assert sidecar["securityContext"]["runAsUser"] == pod["securityContext"]["runAsUser"] == 10001
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True


BUILD_TOOLS = ("uv", "pip", "pip3", "gcc", "cc", "make", "git")


def tools_present(container) -> set[str]:
    code, out = exec_output(container, ["sh", "-c", f"for t in {' '.join(BUILD_TOOLS)}; do command -v $t; done; true"])
    return {line.rsplit("/", 1)[-1] for line in out.split()}


@pytest.mark.parametrize("target", ["component", "sidecar"])
def test_final_images_add_the_installed_project_and_nothing_to_build_with(docker_client, images, target):
    base = load_build_module().REPORT
    base_image = json.loads(base.read_text())["base"]
    containers = [run_container(docker_client, image, entrypoint=["sleep", "300"], command=[], user="0")
                  for image in (images[target], base_image)]
    try:
        final, original = containers
        assert tools_present(final) <= tools_present(original)  # whatever the base has, nothing more
        listing = {path: exec_output(final, ["ls", "-A", path])[1].split() for path in ("/opt", "/mnt", "/opt/venv/bin")}
        assert listing["/opt"] == ["venv"] and listing["/mnt"] == [], listing  # /mnt: where the build mounted uv
        assert not {"pip", "pip3", "uv"} & set(listing["/opt/venv/bin"]), listing
        assert exec_output(final, ["ls", "-d", "/src", "/dist", "/root/.cache"])[1].count("No such file") == 3
        # what the project's wheel installed: its packages and console script, nothing from the checkout
        code, out = exec_output(final, ["python3", "-c", (
            "import importlib.metadata as m, importlib.util as u, flywheel.params as p; "
            "print(sorted({f.parts[0] for f in m.files('flywheel')}), u.find_spec('tests') is None or u.find_spec('tests.support') is None, p.ROOT)")])
        assert code == 0, out
        assert out.strip().splitlines()[-1] == (f"{sorted(PROJECT_PACKAGES)} True /opt/venv/lib/python3.11/site-packages")
    finally:
        for container in containers:
            container.remove(force=True)


def test_component_image_runs_the_project_with_tensorflow(docker_client, images):
    container = run_container(docker_client, images["component"], entrypoint=["sleep", "300"], command=[])
    try:
        code, out = exec_output(container, ["python3", "-c", (
            "import tensorflow as tf, tensorflow_data_validation as tfdv, kfp, components.train, "
            "pipelines.training_pipeline, flywheel.params as p; "
            "print(tf.__version__, tfdv.__version__, kfp.__version__, (p.ROOT / p.SchemaParams().curated).exists())")])
        assert code == 0, out
        assert out.strip().splitlines()[-1] == "2.16.2 1.16.1 2.13.0 True", out
    finally:
        container.remove(force=True)


def test_build_context_is_what_the_dockerfile_installs(docker_client, images, tmp_path):
    """Docker's own reading of .dockerignore: build a probe that lists the context it was sent."""
    build = load_build_module()
    probe = "flywheel-context-probe:test"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {images['sidecar']}\nUSER 0\n"
                          "RUN --mount=type=bind,target=/context cd /context && find . -not -name '*.whl' | sort > /list\n"
                          'ENTRYPOINT ["cat", "/list"]\n')
    result = subprocess.run([*build.docker_cli(), "-q", "-f", str(dockerfile), "-t", probe, str(ROOT)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    try:
        listing = docker_client.containers.run(probe, remove=True).decode().split()
    finally:
        docker_client.images.remove(probe, force=True)
    top = {path.split("/")[1] for path in listing if path.count("/") >= 1}
    assert top == {"requirements.lock", "pyproject.toml", "docker", "flywheel", "components", "pipelines", "serving",
                   "monitoring", "trigger", "devserver", "flywheel_cli"}, top
    docker_files = {path for path in listing if path.startswith("./docker/") and path.count("/") == 2}
    assert docker_files == {"./docker/requirements-build.lock", "./docker/requirements-gpu.lock",
                            "./docker/requirements-sidecar.lock", "./docker/install-wheels", "./docker/wheelhouse"}
    assert not [path for path in listing if "__pycache__" in path or path.endswith(".pyc")]
