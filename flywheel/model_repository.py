"""The model repository in TF Serving's layout: <repository>/<model_name>/<integer version>/.

Local paths use the standard library; gs:// and s3:// go through tf.io.gfile, imported only
then, so that readers such as the monitoring sidecar do not pay for TensorFlow on a laptop.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from flywheel import names


def is_remote(path: str) -> bool:
    return "://" in str(path)


def _gfile():
    import tensorflow as tf  # only for gs:// and s3://
    return tf.io.gfile


def join(*parts: Any) -> str:
    return "/".join(str(p).rstrip("/") for p in parts) if is_remote(str(parts[0])) else os.path.join(*map(str, parts))


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def listdir(path: str) -> list[str]:
    if is_remote(path):
        return [p.rstrip("/") for p in _gfile().listdir(path)] if _gfile().exists(path) else []
    return os.listdir(path) if os.path.isdir(path) else []


def makedirs(path: str) -> None:
    _gfile().makedirs(path) if is_remote(path) else os.makedirs(path, exist_ok=True)


def rename(src: str, dst: str) -> None:
    """Rename a directory. Atomic on a local filesystem (one rename(2)); on object stores
    tf.io.gfile copies then deletes, so TF Serving may briefly see a partial version there:
    the model server's file-system poll treats a version without saved_model.pb as not ready."""
    if is_remote(src):
        _gfile().rename(src, dst, overwrite=False)
    else:
        os.rename(src, dst)


def rmtree(path: str) -> None:
    if is_remote(path):
        _gfile().rmtree(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        with _gfile().GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def model_dir(repository: str, model_name: str) -> str:
    return join(repository, model_name)


def versions(repository: str, model_name: str) -> list[int]:
    """Integer versions present, ascending. Staging directories (names.STAGING_PREFIX) and any
    other non-integer names are ignored, as TF Serving ignores them."""
    return sorted(int(n) for n in listdir(model_dir(repository, model_name)) if n.isdigit())


def latest_version(repository: str, model_name: str) -> int | None:
    found = versions(repository, model_name)
    return found[-1] if found else None


def version_dir(repository: str, model_name: str, version: int) -> str:
    return join(repository, model_name, str(version))


def extra_path(repository: str, model_name: str, version: int, filename: str) -> str:
    """Path of a file Flywheel keeps beside the model, e.g. names.BASELINE_STATS."""
    return join(version_dir(repository, model_name, version), names.EXTRA_DIR, filename)
