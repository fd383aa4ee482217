"""A feature store of its own for a test: the repository copied into a temporary folder, its area
aggregates generated from spans written there, `feast apply`ed and materialised, all with the
feature store's environment (`make feast`)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from flywheel.params import ROOT, DataParams, IngestParams
from tools import datagen

FEAST_PYTHON = ROOT / IngestParams().feast_python


def feast(*args: str, cwd: Path = ROOT) -> str:
    if not FEAST_PYTHON.exists():
        pytest.fail(f"{FEAST_PYTHON} is missing: `make feast` builds it (`make test` does)")
    done = subprocess.run([str(FEAST_PYTHON), *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout


def make_store(root: Path, rows_per_span: int = 2000, spans: int = 2) -> tuple[Path, Path]:
    """(the repository, the spans folder) of a fresh feature store under `root`."""
    spans_dir = root / "spans"
    datagen.write_spans(DataParams(rows_per_span=rows_per_span, spans=spans), spans_dir, IngestParams())
    repo = root / "repo"
    shutil.copytree(ROOT / "featurestore" / "repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    feast("-m", "featurestore", "generate", "--spans", str(spans_dir), "--repo", str(repo))
    feast("-c", "from feast.cli.cli import cli; cli()", "apply", cwd=repo)   # `feast apply`
    feast("-m", "featurestore", "materialize", "--repo", str(repo))
    return repo, spans_dir


class FeatureServer:
    """Feast's HTTP feature server (`feast serve`) for `repo` on a free loopback port."""

    def __init__(self, repo: Path, log: Path):
        from tests.support.net import free_port
        from tests.support.servers import wait_http
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")
        self.process = subprocess.Popen(
            [str(FEAST_PYTHON), "-c", "from feast.cli.cli import cli; cli()", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"], cwd=repo, stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/health", timeout_s=120, gone=lambda: self.process.poll() is not None)
        self.get({"pickup_area": [1]})   # the first answer loads the registry and opens the store: seconds

    def get(self, entities: dict) -> dict:
        import json
        import urllib.request
        request = urllib.request.Request(f"{self.url}/get-online-features", json.dumps(
            {"feature_service": "taxi_area", "entities": entities}).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
