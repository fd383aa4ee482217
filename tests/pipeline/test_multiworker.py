"""Training that streams from Parquet shards, on one worker and on two workers with TF_CONFIG
(MultiWorkerMirroredStrategy over loopback), as a TFJob's replicas run it (components/train_job.py).

The two-worker model must score the test split as well as the one-worker model, within a
tolerance: the workers read different row groups in a different order, so the weights differ,
what they learned must not. About 2 min (three processes each import TensorFlow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from components import model_inputs, training_data
from flywheel import artifacts, names
from flywheel.evaluation.evaluation_metrics import auc
from tests.support.frames import make_frame, workspace
from tests.support.net import free_port

TRAIN = {"epochs": 4, "batch_size": 64, "min_steps": 0}
AUC_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A learnable binary table ingested on the streaming path: several shards and row groups."""
    return workspace(tmp_path_factory.mktemp("sharded"), make_frame(4000, seed=3), **{
        "scale.mode": "streaming", "scale.batch_rows": 250, "scale.shard_rows": 1000})


def _command(space, model_dir) -> list[str]:
    return [sys.executable, "-m", "components.train_job", "--examples", space["examples"],
            "--schema", space["schema"], "--label", "label",
            "--model-dir", str(model_dir), "--params", json.dumps(TRAIN), "--engine", "streaming"]


def _environment(tf_config: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _auc(space, model_dir) -> tuple[float, np.ndarray]:
    test = artifacts.read_split(space["examples"], names.TEST)
    outputs, _ = model_inputs.predict(str(model_dir), test)
    scores = outputs[names.OUTPUT_SCORE]
    return auc(test["label"].to_numpy(), scores), scores


def test_the_examples_are_sharded_and_shared_among_workers(sharded, monkeypatch):
    units = training_data.row_groups(sharded["examples"], names.TRAIN)
    assert len(artifacts.split_files(sharded["examples"], names.TRAIN)) > 1 and len(units) >= 2
    seen = []
    for index in range(2):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "worker", "index": index}}))
        assert training_data.cluster() == (index, 2)
        seen.append(training_data.rows_per_worker(sharded["examples"], names.TRAIN))
    assert sum(seen) == artifacts.split_rows(sharded["examples"], names.TRAIN) and min(seen) > 0


def test_two_workers_learn_what_one_worker_learns(sharded, tmp_path):
    single = subprocess.run(_command(sharded, tmp_path / "single"), env=_environment(None), capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    assert json.loads(single.stdout.strip().splitlines()[-1])["strategy"] != "CollectiveAllReduceStrategy"

    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [subprocess.Popen(_command(sharded, tmp_path / f"multi-{i}"),
                                env=_environment({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        finished = [w.communicate(timeout=900) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for worker, (out, err) in zip(workers, finished):
        assert worker.returncode == 0, err[-2000:]
        # tf.distribute.MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy by class name.
        assert json.loads(out.strip().splitlines()[-1])["strategy"] == "CollectiveAllReduceStrategy"
    assert (tmp_path / "multi-0" / "saved_model.pb").exists()      # the chief exports
    assert not (tmp_path / "multi-1").exists()                     # the other worker does not

    auc_single, scores_single = _auc(sharded, tmp_path / "single")
    auc_multi, scores_multi = _auc(sharded, tmp_path / "multi-0")
    assert auc_single > 0.7 and abs(auc_single - auc_multi) <= AUC_TOLERANCE, (auc_single, auc_multi)
    assert np.corrcoef(scores_single, scores_multi)[0, 1] > 0.9
