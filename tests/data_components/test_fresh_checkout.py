"""A fresh checkout's `make run` leaves `git status` clean: the committed dvc.lock records the
current code and params of the generate stage, so `dvc repro` only restores the spans (from the
cache or by running the generator, which gives the recorded outputs) and rewrites nothing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.params import ROOT


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a checkout")
def test_the_committed_dvc_lock_is_current_on_a_fresh_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
    _git("init", "-q", cwd=checkout)
    dvc = str(Path(sys.executable).with_name("dvc"))
    status = subprocess.run([dvc, "status", "generate", "--json"], cwd=checkout, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert status.returncode == 0, status.stderr
    changes = json.loads(status.stdout or "{}").get("generate", [])
    # The spans themselves are absent from a fresh checkout (a DVC output, git-ignored): that is all
    # that may differ. A changed dependency or parameter would make `dvc repro` rewrite dvc.lock.
    stale = [c for c in changes if isinstance(c, dict) and ("changed deps" in c or "changed params" in c)]
    assert not stale, f"dvc.lock is stale for the generate stage: {stale} (run `dvc commit generate` after `make data`)"
