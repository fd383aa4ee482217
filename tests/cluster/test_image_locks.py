"""The image locks: docker/requirements-*.lock pin what requirements.lock pins, the GPU lock
brings CUDA, the sidecar's lock no TensorFlow; and the manifests name the images the code uses.
(The images themselves are built and run by tests/containers.)"""
from __future__ import annotations

import re

import pytest

from flywheel import names
from tests.support.cluster import ROOT


def _pins(path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", path.read_text(), re.MULTILINE))


@pytest.mark.parametrize("lock", ["docker/requirements-gpu.lock", "docker/requirements-sidecar.lock",
                                  "docker/requirements-build.lock"])
def test_image_locks_agree_with_the_main_lock(lock):
    main, image = _pins(ROOT / "requirements.lock"), _pins(ROOT / lock)
    clashes = {name: (main[name], v) for name, v in image.items() if name in main and main[name] != v}
    assert not clashes, f"{lock} disagrees with requirements.lock: {clashes}"


def test_gpu_lock_brings_cuda_and_the_sidecar_lock_no_tensorflow():
    assert any(name.startswith("nvidia-cudnn") for name in _pins(ROOT / "docker/requirements-gpu.lock"))
    assert not {"tensorflow", "tensorflow-data-validation", "apache-beam"} & set(_pins(ROOT / "docker/requirements-sidecar.lock"))


def test_manifest_images_are_the_names_the_code_uses():
    sidecar_repo = names.SIDECAR_IMAGE.rsplit(":", 1)[0]
    kustomization = (ROOT / "manifests/base/kustomization.yaml").read_text()
    assert f"name: {sidecar_repo}" in kustomization
    assert names.SIDECAR_IMAGE.rsplit(":", 1)[1] in kustomization
