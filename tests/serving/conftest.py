"""Shared fixtures for serving and monitoring tests: a tiny model repository that follows the
brief's contract exactly (Keras `model.export()` SavedModel with raw named inputs and a dict output
{"score": ...}; assets.extra/ with real TFDV baseline statistics of a generated train split, a
schema with TRAINING and SERVING environments, eval_predictions.json, model_card.md, flywheel.json).

Two versions are exported once per session (different weights) and copied into a fresh repository
per test, so tests can push version 2 while version 1 is served.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from flywheel import names

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "taxi_tips"
from tests.app_thread import AppThread  # noqa: E402
from tests.taxi_rows import COMPANIES, FEATURES, LABEL, PAYMENT_TYPES, make_frame, rows_of  # noqa: F401,E402


def _build_model(train: pd.DataFrame, seed: int):
    import keras
    keras.utils.set_random_seed(seed)
    dtypes = {"float": "float32", "int": "int64", "string": "string"}
    inputs = {n: keras.Input(shape=(), dtype=dtypes[k], name=n) for n, k in FEATURES.items()}
    parts = []
    for name, kind in FEATURES.items():
        if kind == "string":
            lookup = keras.layers.StringLookup(vocabulary=sorted(train[name].unique()), output_mode="one_hot")
            parts.append(lookup(inputs[name]))
        else:
            column = train[name].astype("float64")
            norm = keras.layers.Normalization(mean=float(column.mean()), variance=float(column.var() or 1.0))
            parts.append(norm(keras.ops.expand_dims(keras.ops.cast(inputs[name], "float32"), -1)))
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()(parts))
    score = keras.layers.Reshape(())(keras.layers.Dense(1, activation="sigmoid")(hidden))
    return keras.Model(inputs, {names.OUTPUT_SCORE: score})


def _export_version(out: Path, train: pd.DataFrame, test: pd.DataFrame, stats, schema, seed: int) -> None:
    import tensorflow as tf
    from google.protobuf import text_format
    model = _build_model(train, seed)
    model.export(str(out), verbose=False)
    served = tf.saved_model.load(str(out)).signatures[names.SIGNATURE]
    columns = {n: tf.constant(test[n].to_numpy()) for n in FEATURES}
    scores = served(**columns)[names.OUTPUT_SCORE].numpy().tolist()
    extra = out / names.EXTRA_DIR
    extra.mkdir()
    (extra / names.BASELINE_STATS).write_bytes(stats.SerializeToString())
    (extra / names.BASELINE_SCHEMA).write_text(text_format.MessageToString(schema))
    (extra / names.EVAL_PREDICTIONS).write_text(json.dumps({"values": scores}))
    (extra / names.MODEL_CARD).write_text(f"# {MODEL_NAME}\nTest fixture model, seed {seed}.\n")
    (extra / names.MODEL_METADATA).write_text(json.dumps({
        "label": LABEL, "task": names.BINARY, "features": FEATURES, "data_version": f"fixture-{seed}",
        "metrics": {"auc": 0.5}, "pushed_at": 1_767_000_000 + seed}))


@pytest.fixture(scope="session")
def train_frame() -> pd.DataFrame:
    return make_frame(3000, seed=1)


@pytest.fixture(scope="session")
def exported_versions(tmp_path_factory, train_frame) -> dict[int, Path]:
    """Two exported versions (SavedModel + assets.extra) built once per session."""
    import tensorflow_data_validation as tfdv
    stats = tfdv.generate_statistics_from_dataframe(train_frame)
    schema = tfdv.infer_schema(stats)
    schema.default_environment.extend([names.ENV_TRAINING, names.ENV_SERVING])
    tfdv.get_feature(schema, LABEL).not_in_environment.append(names.ENV_SERVING)
    test = make_frame(500, seed=2)
    root = tmp_path_factory.mktemp("exported")
    built = {}
    for version, seed in ((1, 11), (2, 22)):
        _export_version(root / str(version), train_frame, test, stats, schema, seed)
        built[version] = root / str(version)
    return built


def push_version(exported: dict[int, Path], repository: Path, version: int) -> Path:
    """Copy a version in the way the push step does: stage under a dot-name, then one rename."""
    model_dir = repository / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f"{names.STAGING_PREFIX}{version}"
    shutil.copytree(exported[version], staging)
    final = model_dir / str(version)
    os.rename(staging, final)
    return final


@pytest.fixture
def model_repository(tmp_path, exported_versions) -> Path:
    """A model repository with version 1 of MODEL_NAME pushed."""
    repository = tmp_path / "model_repository"
    push_version(exported_versions, repository, 1)
    return repository


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == expect:
                    return
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout_s}s")


class ServerProcess:
    """A subprocess started with the repo's Python; stopped (and reaped) by the fixture."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log.open("wb"),
                                     stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_dev_server(repository: Path, log_dir: Path, poll_seconds: float = 0.5) -> ServerProcess:
    """The development model server on free ports, serving `repository`."""
    rest, grpc_port = free_port(), free_port()
    server = ServerProcess(["-m", "devserver", "--rest-port", str(rest), "--grpc-port", str(grpc_port),
                            "--model-repository", str(repository), "--model-name", MODEL_NAME,
                            "--poll-seconds", str(poll_seconds)], log_dir / f"model_server_{rest}.log")
    try:
        wait_http(f"http://127.0.0.1:{rest}/v1/models/{MODEL_NAME}", timeout_s=120)
    except TimeoutError:
        server.stop()
        raise AssertionError("model server did not start:\n" + server.log.read_text()[-3000:])
    server.rest_url = f"http://127.0.0.1:{rest}"
    server.grpc_target = f"127.0.0.1:{grpc_port}"
    server.repository = repository
    return server


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory, exported_versions):
    """One dev model server per test module, serving version 1 (tests must not push to it)."""
    root = tmp_path_factory.mktemp("served")
    push_version(exported_versions, root / "model_repository", 1)
    server = start_dev_server(root / "model_repository", root)
    yield server
    server.stop()


class SidecarThread:
    """The sidecar app (monitoring.app.make_app) on its own event loop in a thread, on a free port."""

    def __init__(self, config, **make_app_kwargs):
        from prometheus_client import CollectorRegistry

        from monitoring.app import SIDECAR, make_app
        self.registry = make_app_kwargs.pop("registry", None) or CollectorRegistry()
        self.app = make_app(config, registry=self.registry, **make_app_kwargs)
        self.state = self.app[SIDECAR]
        self.url = f"http://127.0.0.1:{config.port}"
        self.server = AppThread(self.app, config.port, timeout=30, what="sidecar")

    def metric(self, name: str, labels: dict | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def drain(self) -> None:
        assert self.state.observer.drain(20), "observer did not drain"

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def sidecar_factory(tmp_path):
    """start(upstream_url, repository, **config overrides) -> SidecarThread; all stopped at teardown."""
    from monitoring.config import SidecarConfig
    started = []

    def start(upstream: str, repository: Path, writer=None, **overrides) -> SidecarThread:
        config = SidecarConfig(upstream=upstream, model_repository=str(repository), model_name=MODEL_NAME,
                               port=free_port(), log_dir=str(tmp_path / f"log{len(started)}"),
                               version_poll_s=0.2, **overrides)
        sidecar = SidecarThread(config, writer=writer)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()
