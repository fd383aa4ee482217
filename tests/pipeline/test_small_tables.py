"""Small tables as users bring them: a few hundred rows, an ISO date column, a column name with "/",
a string label. The fit is sized to the rows, dates become trend and cycles inside the model, and
evaluate sets the candidate beside a majority-class (or mean) and a linear baseline."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import evaluate, train
from flywheel import names
from flywheel.evaluation import baselines
from flywheel.params import EvaluateParams, TrainParams
from flywheel.schema_view import ISO_DATE, ISO_DATETIME, UNIX_SECONDS, Feature
from flywheel.temporal import time_encoding, timeparts
from tests.support.frames import workspace

NO_SLICES = EvaluateParams(slice_features=(), slice_crosses=())


def small_table(rows: int, seed: int) -> pd.DataFrame:
    """Season (day of year) and temperature carry the label; dates span two years."""
    rng = np.random.default_rng(seed)
    day = np.datetime64("2024-01-01") + rng.integers(0, 730, rows)
    season = np.sin(2 * np.pi * (day - day.astype("datetime64[Y]")).astype(int) / 365.25)
    temp = rng.normal(15, 8, rows)
    signal = 1.5 * season + 0.1 * (temp - 15) + rng.logistic(0, 0.4, rows)
    return pd.DataFrame({"temp/°C": np.where(rng.random(rows) < 0.05, np.nan, temp.round(1)),
                         "station": rng.choice(["north", "south", "east"], rows),
                         "day": day.astype(str), "busy": np.where(signal > 0, "yes", "no")})


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    space = workspace(root, small_table(180, seed=3), label="busy")
    model_dir = str(root / "model")
    result = train.run(space["examples"], space["schema"], "busy", model_dir, space["params"].train)
    evaluation = evaluate.run(space["examples"], model_dir, str(root / "evaluation"), NO_SLICES, model_name="small")
    return space, model_dir, result, evaluation


def _tf_parts(values, from_strings: bool) -> tuple[dict, np.ndarray]:
    seconds, valid = time_encoding.seconds_and_valid(tf.constant(values), from_strings)
    return {k: v.numpy() for k, v in time_encoding.parts(seconds).items()}, valid.numpy()


@pytest.mark.parametrize("kind", ["date", "datetime", "epoch"])
def test_the_model_reads_time_parts_as_the_drift_checks_do(kind):
    rng = np.random.default_rng(0)
    seconds = rng.integers(-20 * 365, 200 * 365, 2000) * timeparts.DAY + \
        (rng.integers(0, timeparts.DAY, 2000) if kind != "date" else 0)
    stamps = seconds.astype("datetime64[s]")
    values = {"date": np.datetime_as_string(stamps, unit="D"), "datetime": np.datetime_as_string(stamps, unit="s"),
              "epoch": seconds}[kind]
    if kind == "epoch":
        values = values[(values >= timeparts.EPOCH_MIN) & (values < timeparts.EPOCH_MAX)]
    got, valid = _tf_parts(values.astype(str) if kind != "epoch" else values.astype(np.int64), kind != "epoch")
    want = timeparts.parts(timeparts.parse(values.astype(object) if kind != "epoch" else values).seconds,
                           kind != "date")
    assert valid.all()
    np.testing.assert_allclose(got[timeparts.TREND], want[timeparts.TREND], atol=1e-9)
    for part in (timeparts.DAY_OF_YEAR, timeparts.WEEKDAY) + ((timeparts.HOUR,) if kind != "date" else ()):
        np.testing.assert_array_equal(got[part], want[part].astype(np.int64), err_msg=part)


def test_malformed_and_impossible_dates_are_flagged_not_parsed():
    _, valid = _tf_parts(np.array(["2026-02-29", "2024-02-29", "2026-13-01", "soon", "", "2026-03-05 08:30",
                                   "2026-03-05T24:00", "20260305"]), True)
    assert valid.tolist() == [False, True, False, False, False, True, False, False]


@pytest.mark.parametrize("rows, batch, epochs", [(137, 16, 15), (1200, 128, 13), (4000, 256, 8), (200_000, 256, 8)])
def test_the_fit_is_sized_to_the_rows(rows, batch, epochs):
    params = TrainParams()
    assert train.fit_plan(rows, params) == (batch, epochs)
    assert -(-rows // batch) * epochs >= params.min_steps        # gradient steps
    assert train.fit_plan(rows, TrainParams(min_steps=0)) == (batch, params.epochs)


def test_a_small_table_with_a_date_and_odd_names_trains_and_is_blessed(small):
    space, model_dir, result, evaluation = small
    metadata = json.load(open(os.path.join(model_dir, names.EXTRA_DIR, names.MODEL_METADATA)))
    assert metadata["time_formats"] == {"day": ISO_DATE}
    assert metadata["family"] == metadata["selection"]["family"]
    assert set(metadata["selection"]["candidates"]) == {"linear", "gbt", "wide_deep"}
    assert metadata["signature_keys"]["temp/°C"] == "temp__C"
    assert evaluation.blessed, evaluation.reason
    simple = evaluation.baselines
    assert simple["metric"] == "auc" and simple[baselines.MAJORITY] == pytest.approx(0.5)
    # 18 test rows: the candidate and the linear model are both far above chance, close to each other.
    assert evaluation.metrics["auc"] > 0.75 and simple[baselines.LINEAR] > 0.75
    card = open(os.path.join(str(space["root"] / "evaluation"), names.MODEL_CARD)).read()
    assert "| day | string (time: %Y-%m-%d) |" in card and "| linear |" in card and "| majority | 0.5000 |" in card


def test_a_date_the_model_never_saw_and_a_missing_one_are_served(small):
    _, model_dir, _, _ = small
    serve = tf.saved_model.load(model_dir).signatures[names.SIGNATURE]
    out = serve(temp__C=tf.constant([20.0, np.nan, 5.0]), station=tf.constant(["north", "west", "south"]),
                day=tf.constant(["2031-07-01", "", "not a date"]))[names.OUTPUT_SCORE].numpy()
    assert out.shape == (3,) and np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    summer, winter = serve(temp__C=tf.constant([15.0, 15.0]), station=tf.constant(["north", "north"]),
                           day=tf.constant(["2025-04-01", "2025-10-01"]))[names.OUTPUT_SCORE].numpy()
    assert summer > winter      # the season the label follows, learned from the date's day of year


def test_a_model_that_does_not_beat_the_majority_class_or_the_linear_model_is_not_blessed():
    simple = baselines.Baselines("accuracy", {baselines.MAJORITY: 0.62, baselines.LINEAR: 0.70})
    config = EvaluateParams(min_accuracy=0.0)
    blessed, reason = evaluate.bless(names.MULTICLASS, {"accuracy": 0.62}, None, config, simple)
    assert not blessed and "does not beat the majority baseline's 0.6200" in reason
    blessed, reason = evaluate.bless(names.MULTICLASS, {"accuracy": 0.64}, None, config, simple)
    assert not blessed and "does not beat the linear baseline's 0.7000" in reason and "[linear]" in reason
    assert evaluate.bless(names.MULTICLASS, {"accuracy": 0.71}, None, config, simple)[0]
    # The linear model itself ships: only the trivial baseline is left to beat.
    assert evaluate.bless(names.MULTICLASS, {"accuracy": 0.64}, None, config, simple, family="linear")[0]
    mean = baselines.Baselines("rmse", {baselines.MEAN: 3.0, baselines.LINEAR: 2.0})
    assert not evaluate.bless(names.REGRESSION, {"rmse": 3.1}, None, config, mean)[0]
    assert not evaluate.bless(names.REGRESSION, {"rmse": 2.9}, None, config, mean)[0]
    assert evaluate.bless(names.REGRESSION, {"rmse": 1.9}, None, config, mean)[0]


def test_beating_a_baseline_means_beyond_the_paired_interval():
    simple = baselines.Baselines("auc", {baselines.MAJORITY: 0.5, baselines.LINEAR: 0.80})
    config = EvaluateParams()
    within = {baselines.MAJORITY: (0.31, 0.25, 0.37), baselines.LINEAR: (0.01, -0.02, 0.04)}
    blessed, reason = evaluate.bless(names.BINARY, {"auc": 0.81}, None, config, simple, within, family="gbt")
    assert not blessed and "by more than its interval" in reason and "[-0.0200, +0.0400]" in reason
    beyond = {**within, baselines.LINEAR: (0.05, 0.02, 0.08)}
    assert evaluate.bless(names.BINARY, {"auc": 0.85}, None, config, simple, beyond, family="gbt")[0]


def test_the_linear_baseline_recovers_known_models():
    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(4000), rng.normal(size=(4000, 3))])
    truth = np.array([0.5, 2.0, -1.0, 0.0])
    y = (rng.random(4000) < 1 / (1 + np.exp(-x @ truth))).astype(float)
    np.testing.assert_allclose(baselines.logistic(x, y), truth, atol=0.2)
    target = x @ truth + rng.normal(0, 0.1, 4000)
    np.testing.assert_allclose(baselines.ridge(x, target), truth, atol=0.02)
    three = np.digitize(x[:, 1], [-0.5, 0.5])
    outputs = baselines.linear_outputs(names.MULTICLASS, x, three, x, 3)
    assert np.mean(outputs[names.OUTPUT_PROBABILITIES].argmax(axis=1) == three) > 0.9


def test_baselines_encode_dates_numbers_and_levels_as_the_model_does():
    frame = small_table(400, seed=5)
    frame["busy"] = frame["busy"].map({"no": 0, "yes": 1})
    features = [Feature("temp/°C", "float"), Feature("station", "string", True),
                Feature("day", "string", time_format=ISO_DATE)]
    metadata = {"label": "busy", "task": names.BINARY, "label_vocabulary": [0, 1]}
    with_date = baselines.assess(frame[:300], frame[300:], metadata, features)
    without = baselines.assess(frame[:300], frame[300:], metadata, features[:2])
    assert with_date.values[baselines.LINEAR] > without.values[baselines.LINEAR] + 0.1   # the season is in the date
    assert time_encoding.width(Feature("t", "string", time_format=ISO_DATETIME)) == 35
    assert time_encoding.width(Feature("t", "int", time_format=UNIX_SECONDS)) == 35
