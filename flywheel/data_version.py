"""What version of the data a run read: the md5 of its bytes, the git revision, the DVC entry.

The md5 of a file is its DVC md5 (DVC hashes file contents), so it matches `.dvc` and `dvc.lock`
entries; `dvc_tracking` says which entry tracks the file and whether the copy still matches it.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

from flywheel import storage


def git(args: list[str], cwd: str) -> str:
    """A git command's output, or "" when git or the repository is absent."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def dvc_tracking(data_path: str, md5: str) -> str:
    """Which DVC entry tracks the file, and whether the file still matches it; "" if none."""
    path = Path(data_path).resolve()
    dvc_file = path.with_name(path.name + ".dvc")
    if dvc_file.exists():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [])
        recorded = outs[0].get("md5", "") if outs else ""
        state = "matches" if recorded == md5 else f"MODIFIED since (recorded md5 {recorded})"
        return f"{dvc_file.name} ({state})"
    for parent in path.parents:
        lock = parent / "dvc.lock"
        if lock.exists():
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
            for stage, entry in stages.items():
                for out in entry.get("outs", []):
                    out_path = (parent / out["path"]).resolve()
                    if path == out_path or out_path in path.parents:
                        return f"dvc.lock stage '{stage}' output {out['path']} (md5 {out.get('md5', '?')})"
            break
    return ""


def describe(data_path: str, data: bytes, data_rev: str, dvc_repo: str | Path) -> dict:
    """data_version (md5 of the bytes), data_rev, git_rev and dvc_tracked of what was read."""
    return describe_md5(data_path, hashlib.md5(data).hexdigest(), data_rev, dvc_repo)


def describe_md5(data_path: str, md5: str, data_rev: str, dvc_repo: str | Path, several: bool = False) -> dict:
    """The same from an md5 computed while streaming; `several` files (a directory or a pattern)
    have no single DVC md5 to compare with."""
    local = not storage.is_remote(data_path)
    where = str(dvc_repo) if data_rev else (os.path.dirname(os.path.abspath(data_path)) if local else "")
    git_rev = git(["rev-parse", data_rev or "HEAD"], where) if where else ""
    return {
        "data_version": f"md5:{md5}",
        "data_rev": data_rev,
        "git_rev": git_rev,
        "dvc_tracked": (dvc_tracking(data_path, md5) if local and not data_rev and not several
                        else (f"dvc.api at {data_rev}" if data_rev else "")),
    }
