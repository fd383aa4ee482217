"""One storage layer for every path Flywheel reads or writes: local paths, gs:// and s3://.

Local paths use the standard library; object-store URLs go through tf.io.gfile, imported only
then, so readers such as the monitoring sidecar never pay for TensorFlow when the model
repository is a mounted volume.
"""
from __future__ import annotations

import os
import shutil
from typing import Any


def is_remote(path: str) -> bool:
    return "://" in str(path)


def absolute(path: str) -> str:
    """A local path made absolute (a step may run in another directory); URLs unchanged."""
    return path if not path or is_remote(path) else os.path.abspath(path)


def _gfile():
    import tensorflow as tf  # only for gs:// and s3://
    return tf.io.gfile


def join(*parts: Any) -> str:
    return "/".join(str(p).rstrip("/") for p in parts) if is_remote(str(parts[0])) else os.path.join(*map(str, parts))


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def listdir(path: str) -> list[str]:
    """Entry names in a directory; [] when it does not exist."""
    if is_remote(path):
        return [p.rstrip("/") for p in _gfile().listdir(path)] if _gfile().exists(path) else []
    return os.listdir(path) if os.path.isdir(path) else []


def makedirs(path: str) -> None:
    _gfile().makedirs(path) if is_remote(path) else os.makedirs(path, exist_ok=True)


def rename(src: str, dst: str) -> None:
    """Rename a directory or file. Atomic on a local filesystem (one rename(2)); on object
    stores tf.io.gfile copies then deletes, so a reader may briefly see a partial directory
    there: readers treat a version without saved_model.pb as not ready."""
    if is_remote(src):
        _gfile().rename(src, dst, overwrite=False)
    else:
        os.rename(src, dst)


def remove(path: str) -> None:
    """Delete a file or a directory tree; nothing when it is absent."""
    if is_remote(path):
        if _gfile().exists(path):
            _gfile().rmtree(path) if _gfile().isdir(path) else _gfile().remove(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        with _gfile().GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file. Local writes go to a temporary sibling renamed into place, so a
    reader never sees half a file; object stores publish an object only when it is closed."""
    if is_remote(path):
        with _gfile().GFile(path, "wb") as f:
            f.write(data)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    staging = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(staging, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.unlink(staging)
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def copy_file(src: str, dst: str) -> None:
    """Copy one file from a local or remote source to a local or remote destination."""
    if is_remote(src) or is_remote(dst):
        _gfile().copy(src, dst, overwrite=True)
    else:
        shutil.copyfile(src, dst)


def copy_tree(src: str, dst: str) -> None:
    """Copy a directory tree (local or remote source) to a destination that does not exist yet."""
    if not is_remote(src) and not is_remote(dst):
        shutil.copytree(src, dst)
        return
    makedirs(dst)
    for name in listdir(src):
        source, target = join(src, name), join(dst, name)
        if isdir(source):
            copy_tree(source, target)
        else:
            copy_file(source, target)
