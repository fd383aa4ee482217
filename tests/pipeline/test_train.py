"""The train step: task detection, the exported serving signature, curves, and failure safety."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import train
from flywheel import labels, names
from flywheel.errors import DataError
from flywheel.params import TrainParams
from tests.support.frames import make_frame, workspace, write_examples

FAST = TrainParams(epochs=3, batch_size=128, min_steps=0, families=("wide_deep",))   # the network's own tests


@pytest.fixture(scope="module")
def trained(binary_workspace):
    model_dir = str(binary_workspace["root"] / "model")
    curves = str(binary_workspace["root"] / "curves.html")
    result = train.run(binary_workspace["examples"], binary_workspace["schema"], "label", model_dir, FAST,
                       curves_path=curves, data_version="md5:abc")
    return result, model_dir, curves


def test_serving_signature_takes_raw_named_features(trained):
    result, model_dir, _ = trained
    signature = tf.saved_model.load(model_dir).signatures[names.SIGNATURE]
    inputs = signature.structured_input_signature[1]
    assert {k: v.dtype for k, v in inputs.items()} == {
        "distance": tf.float32, "passengers": tf.int64, "payment": tf.string, "start_time": tf.int64}
    assert all(spec.shape.as_list() == [None] for spec in inputs.values())
    out = signature(distance=tf.constant([1.0, np.nan]), passengers=tf.constant([1, 3], tf.int64),
                    payment=tf.constant(["card", "never-seen"]), start_time=tf.constant([1767600000, 1767700000], tf.int64))
    score = out[names.OUTPUT_SCORE].numpy()
    assert score.shape == (2,) and np.all((score >= 0) & (score <= 1)) and np.all(np.isfinite(score))
    assert result.task == names.BINARY and result.label_vocabulary == [0, 1]


def test_model_learns_and_records_metadata(trained):
    result, model_dir, _ = trained
    assert result.history["val_auc"][-1] > 0.7
    with open(os.path.join(model_dir, names.EXTRA_DIR, names.MODEL_METADATA)) as f:
        metadata = json.load(f)
    assert metadata["label"] == "label" and metadata["task"] == names.BINARY
    assert metadata["features"]["payment"] == "string" and "payment" in metadata["categorical"]
    assert metadata["data_version"] == "md5:abc"


def test_curves_are_written_as_html_and_png(trained):
    _, _, curves = trained
    html = open(curves).read()
    assert "data:image/png;base64," in html and "val_loss" in html
    png = open(os.path.splitext(curves)[0] + ".png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("task,output", [(names.MULTICLASS, names.OUTPUT_PROBABILITIES), (names.REGRESSION, names.OUTPUT_SCORE)])
def test_task_is_chosen_from_the_label(tmp_path, task, output):
    ws = workspace(tmp_path, make_frame(800, seed=3, task=task))
    result = train.run(ws["examples"], ws["schema"], "label", str(tmp_path / "model"), TrainParams(epochs=1, min_steps=0))
    assert result.task == task
    signature = tf.saved_model.load(str(tmp_path / "model")).signatures[names.SIGNATURE]
    assert output in signature.structured_outputs
    if task == names.MULTICLASS:
        assert result.label_vocabulary == ["high", "low", "mid"]
        assert signature.structured_outputs[output].shape.as_list() == [None, 3]


def test_infer_task_rules():
    assert labels.infer_task(pd.Series([0, 1, 1]), "y") == (names.BINARY, [0, 1])
    assert labels.infer_task(pd.Series(["no", "yes"]), "y") == (names.BINARY, ["no", "yes"])
    assert labels.infer_task(pd.Series([1, 2, 3]), "y")[0] == names.MULTICLASS
    assert labels.infer_task(pd.Series([0.5, 1.25, 3.0]), "y")[0] == names.REGRESSION
    assert labels.infer_task(pd.Series(range(100)), "y")[0] == names.REGRESSION


def test_single_valued_label_is_refused_and_nothing_is_written(tmp_path):
    frame = make_frame(400, seed=4)
    frame["label"] = 1
    frame.loc[frame.index[-1], "label"] = 0   # ingest accepts the file; its train split has one value
    schema = workspace(tmp_path / "ws", frame)["schema"]
    examples = write_examples(str(tmp_path / "examples"), frame)
    with pytest.raises(DataError, match=r"column 'label'.*single value"):
        train.run(examples, schema, "label", str(tmp_path / "model"), FAST)
    assert not os.path.exists(tmp_path / "model")
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_missing_label_column_names_split_and_column(tmp_path, binary_workspace):
    frame = make_frame(300, seed=5).drop(columns=["label"])
    examples = write_examples(str(tmp_path / "examples"), frame)
    with pytest.raises(DataError, match=r"column 'label' of the train split"):
        train.run(examples, binary_workspace["schema"], "label", str(tmp_path / "model"), FAST)
    assert not os.path.exists(tmp_path / "model")
