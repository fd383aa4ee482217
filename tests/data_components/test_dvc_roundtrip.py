"""DVC in a throwaway git repo built from this repo's files: repro, status clean, push/pull to
the committed default remote, `dvc add` of a user CSV, and ingest at a git revision."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import ingest
from flywheel import params

from flywheel.params import IngestParams
from tests.support.spans import LABEL, span, write_span

COPIED = ("flywheel", "components", "tools", "dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore")
BIN = Path(sys.executable).parent


def _sh(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    result = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _md5s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def repo(tmp_path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    for name in COPIED:
        source, target = params.ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    settings = yaml.safe_load((params.ROOT / "params.yaml").read_text())
    settings["data"]["rows_per_span"] = 300       # small, the stage is what is under test
    (root / "params.yaml").write_text(yaml.safe_dump(settings))
    (root / ".gitignore").write_text("/data/spans/\n/dvc-remote/\n__pycache__/\n")
    _sh(root, "git", "init", "-q")
    _sh(root, "git", "add", ".")
    _sh(root, "git", "commit", "-qm", "copy")
    return root


def test_repro_status_push_pull(repo):
    # Only the data stage: a training stage the pipeline adds to dvc.yaml is not under test here.
    _sh(repo, "dvc", "repro", "generate")
    spans = repo / "data" / "spans"
    assert sorted(os.listdir(spans)) == ["span-001.csv", "span-002.csv", "span-003.csv"]
    assert "up to date" in _sh(repo, "dvc", "status", "generate")
    _sh(repo, "git", "add", "dvc.lock")
    _sh(repo, "git", "commit", "-qm", "lock")
    assert "up to date" in _sh(repo, "dvc", "repro", "generate")     # nothing changed, nothing re-runs
    before = _md5s(spans)

    _sh(repo, "dvc", "push", "generate")
    assert any((repo / "dvc-remote").rglob("*")), "the default remote (dvc-remote/ beside .dvc/) is empty"
    shutil.rmtree(spans)
    shutil.rmtree(repo / ".dvc" / "cache")
    _sh(repo, "dvc", "pull", "generate")
    assert _md5s(spans) == before
    assert "up to date" in _sh(repo, "dvc", "status", "generate")
    # The version ingest records for a span is the md5 DVC keeps for that file.
    meta = ingest.run(str(spans / "span-002.csv"), repo / "out", IngestParams(label=LABEL), dvc_repo=repo)
    assert meta["data_version"] == f"md5:{before['span-002.csv']}"
    assert meta["dvc_tracked"].startswith("dvc.lock stage 'generate' output data/spans")


def test_dvc_add_user_csv_and_ingest_at_a_revision(repo):
    user = write_span(repo, span(1, rows=400), "trips.csv")
    _sh(repo, "dvc", "add", "trips.csv")
    _sh(repo, "git", "add", "trips.csv.dvc", ".gitignore")
    _sh(repo, "git", "commit", "-qm", "add user data")
    committed_md5 = yaml.safe_load((repo / "trips.csv.dvc").read_text())["outs"][0]["md5"]
    meta = ingest.run(str(user), repo / "now", IngestParams(label=LABEL))
    assert meta["data_version"] == f"md5:{committed_md5}" and meta["dvc_tracked"] == "trips.csv.dvc (matches)"

    _sh(repo, "dvc", "push", "trips.csv.dvc")
    write_span(repo, span(2, rows=400), "trips.csv")       # the workspace moves on
    assert "MODIFIED" in ingest.run(str(user), repo / "modified", IngestParams(label=LABEL))["dvc_tracked"]
    at_rev = ingest.run("trips.csv", repo / "at_head", IngestParams(label=LABEL), data_rev="HEAD", dvc_repo=repo)
    assert at_rev["data_version"] == f"md5:{committed_md5}"
    assert at_rev["git_rev"] == _sh(repo, "git", "rev-parse", "HEAD").strip()
    assert at_rev["rows_read"] == 400
