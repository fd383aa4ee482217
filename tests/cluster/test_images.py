"""docker/Dockerfile read as a Docker build would: pinned bases, non-root finals, no build tools
in the final stages, a context (.dockerignore) that carries exactly what the build copies, and
a GPU lock that agrees with requirements.lock. (No Docker engine here: `make images` builds.)"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.cluster import ROOT
from flywheel import names

DOCKERFILE = ROOT / "docker/Dockerfile"
FINAL_TARGETS = ("component", "component-gpu", "sidecar")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|cmake|clang|uv|pip install|apt-get install)\b")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> dict[str, dict]:
    stages, current = {}, None
    for word, rest in _instructions():
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            current = {"from": m.group(1), "body": []}
            stages[m.group(2) or f"stage{len(stages)}"] = current
        elif current is not None:
            current["body"].append((word, rest))
    return stages


def _chain(stages: dict, name: str) -> list[str]:
    """The stage and its ancestors within this Dockerfile, nearest first."""
    chain = [name]
    while stages[chain[-1]]["from"] in stages:
        chain.append(stages[chain[-1]]["from"])
    return chain


def test_every_external_base_is_pinned_by_digest():
    stages = _stages()
    external = [s["from"] for s in stages.values() if s["from"] not in stages]
    assert external, "no base image found"
    for image in external:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"not pinned by tag@digest: {image}"


def test_final_targets_run_as_a_numeric_non_root_user():
    stages = _stages()
    for target in FINAL_TARGETS:
        users = [rest for word, rest in stages[target]["body"] if word == "USER"]
        assert users, f"{target}: no USER"
        uid, _, gid = users[-1].partition(":")
        assert uid.isdigit() and int(uid) >= 10000, f"{target}: USER {users[-1]} (numeric, >= 10000 for PSS)"


def test_final_targets_carry_no_build_tools():
    """Final stages copy a finished venv; installing or compiling happens only in build stages."""
    stages = _stages()
    for target in FINAL_TARGETS:
        for stage in _chain(stages, target):
            if stage.startswith("build"):
                continue
            for word, rest in stages[stage]["body"]:
                if word == "RUN":
                    assert not BUILD_TOOLS.search(rest), f"{target} (stage {stage}) runs a build tool: {rest}"
                if word == "COPY" and "--from=" in rest:
                    assert re.search(r"--from=build(-gpu|-sidecar)?\s+/opt/venv\s+/opt/venv", rest), rest
    # and the build stages' tools never reach a final stage by inheritance
    for target in FINAL_TARGETS:
        assert not any(s.startswith("build") for s in _chain(stages, target)), target


def test_sidecar_entrypoint_is_the_monitoring_module():
    body = dict(_stages()["sidecar"]["body"])
    assert body["ENTRYPOINT"] == '["python3", "-m", "monitoring"]'
    assert '"--port", "8080"' in body["CMD"] and '"--upstream", "http://127.0.0.1:8501"' in body["CMD"]
    assert body["EXPOSE"] == "8080"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns used here (last match wins, ! re-includes)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern.replace("**/", "")) if pattern.startswith("**/") else None
        hit = (fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/")
               or (regex is not None and any(re.match(regex, part) for part in path.split("/"))))
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_sends_what_is_copied_and_nothing_else():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [rest.split()[-2] for word, rest in _instructions() if word == "COPY" and "--from" not in rest]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not _ignored(source.rstrip("/"), patterns), f"COPY {source} is excluded by .dockerignore"
        assert not _ignored(f"{source.rstrip('/')}/x.py", patterns) or (ROOT / source).is_file(), source
    for secret_or_bulk in (".venv/bin/python", ".git/config", "data/spans/span=1/x.parquet", "model_repository/m/1/x",
                           "runs/prediction_log/x.jsonl", "flywheel/__pycache__/names.cpython-311.pyc", ".env"):
        assert _ignored(secret_or_bulk, patterns), f"{secret_or_bulk} would be sent to the build"


def _pins(path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", path.read_text(), re.MULTILINE))


@pytest.mark.parametrize("lock", ["docker/requirements-gpu.lock", "docker/requirements-sidecar.lock"])
def test_image_locks_agree_with_the_main_lock(lock):
    main, image = _pins(ROOT / "requirements.lock"), _pins(ROOT / lock)
    clashes = {name: (main[name], v) for name, v in image.items() if name in main and main[name] != v}
    assert not clashes, f"{lock} disagrees with requirements.lock: {clashes}"


def test_gpu_lock_brings_cuda_and_the_sidecar_lock_no_tensorflow():
    assert any(name.startswith("nvidia-cudnn") for name in _pins(ROOT / "docker/requirements-gpu.lock"))
    assert not {"tensorflow", "tensorflow-data-validation", "apache-beam"} & set(_pins(ROOT / "docker/requirements-sidecar.lock"))


def test_sidecar_runs_from_its_image_lock_alone(tmp_path):
    """What the sidecar image holds (docker/requirements-sidecar.lock + the project, no deps) is
    enough to start `python -m monitoring`, answer /healthz/live and export its metrics."""
    uv = str(ROOT / ".venv/bin/uv") if (ROOT / ".venv/bin/uv").exists() else shutil.which("uv")
    if uv is None:
        pytest.fail("uv not found: `make setup` installs it into .venv")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin/python")
    for args in (["-r", str(ROOT / "docker/requirements-sidecar.lock")], ["--no-deps", str(ROOT)]):
        result = subprocess.run([uv, "pip", "install", "-q", "--python", python, *args], capture_output=True,
                                text=True, timeout=600, env={**os.environ, "UV_NO_PROGRESS": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
    port = _free_port()
    log = (tmp_path / "sidecar.log").open("wb")
    # cwd outside the repository, as in the image: imports come from the installed venv only
    proc = subprocess.Popen([python, "-m", "monitoring", "--host", "127.0.0.1", "--port", str(port),
                             "--upstream", "http://127.0.0.1:9", "--model-repository", str(tmp_path / "models"),
                             "--model-name", names.DEFAULT_MODEL_NAME, "--log-dir", str(tmp_path / "log")],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/live", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except (OSError, urllib.error.URLError):
                assert proc.poll() is None, (tmp_path / "sidecar.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "sidecar did not start"
                time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"flywheel_upstream_up" in resp.read()
        imported_tf = subprocess.run([python, "-c", "import monitoring.app, sys; print('tensorflow' in sys.modules)"],
                                     cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert imported_tf.stdout.strip() == "False"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_manifest_images_are_the_names_the_code_uses():
    sidecar_repo = names.SIDECAR_IMAGE.rsplit(":", 1)[0]
    kustomization = (ROOT / "manifests/base/kustomization.yaml").read_text()
    assert f"name: {sidecar_repo}" in kustomization
    assert names.SIDECAR_IMAGE.rsplit(":", 1)[1] in kustomization
