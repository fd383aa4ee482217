"""Write an artifact completely or not at all.

Every data step writes into a temporary sibling of its output and renames it into place only
when everything succeeded, so a failed step leaves no half-written artifact for a later step
(or a later run) to pick up.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `path` on success and vanishes on error.
    An existing `path` (KFP may pre-create an empty one; a re-run has an old one) is replaced."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; artifacts are read by other steps' users
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.rename(staging, target)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that replaces `path` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    os.chmod(name, 0o644)
    staging = Path(name)
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, target)
