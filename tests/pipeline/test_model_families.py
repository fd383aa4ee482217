"""Model families: each serves the same signature, the selection is made on the eval split, a model
answering NaN is refused with its rows named, nothing NaN is written, and one span trained twice
gives the same metrics and decisions."""
import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components import evaluate, model_families, model_inputs, train
from flywheel import labels, names
from flywheel.evaluation import evaluation_metrics as em
from flywheel.params import EvaluateParams, TrainParams

FAST = TrainParams(epochs=3, batch_size=128, min_steps=0)
NO_SLICES = EvaluateParams(slice_features=(), slice_crosses=())


@pytest.mark.parametrize("family", model_families.FAMILIES)
def test_every_family_serves_the_same_signature_and_its_eval_score(binary_workspace, tmp_path, family):
    space = binary_workspace
    result = train.run(space["examples"], space["schema"], "label", str(tmp_path / "model"),
                       dataclasses.replace(FAST, families=(family,)))
    assert result.family == family
    signature = tf.saved_model.load(str(tmp_path / "model")).signatures[names.SIGNATURE]
    assert {k: v.dtype for k, v in signature.structured_input_signature[1].items()} == {
        "distance": tf.float32, "passengers": tf.int64, "payment": tf.string, "start_time": tf.int64}
    # The exported model, scored as evaluate and TF Serving score it, gives the score the selection saw.
    rows = model_inputs.read_split(space["examples"], names.EVAL)
    rows = rows[rows["label"].notna()]
    outputs, metadata = model_inputs.predict(str(tmp_path / "model"), rows)
    served = em.auc(labels.encode(rows["label"], names.BINARY, metadata["label_vocabulary"]), outputs[names.OUTPUT_SCORE])
    assert served == pytest.approx(result.selection["candidates"][family]["eval_score"], abs=1e-6)
    assert served > 0.7 and metadata["family"] == family


def _candidates(task_labels: np.ndarray, scores: dict[str, np.ndarray]) -> dict:
    return {f: model_families.scored(f, names.BINARY, task_labels, {names.OUTPUT_SCORE: s}, 1.0)
            for f, s in scores.items()}


def test_simplest_rule_keeps_the_linear_model_unless_another_leads_beyond_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    signal = y + rng.normal(0, 1.0, 400)
    slightly = signal + np.random.default_rng(3).normal(0, 0.5, 400) + 0.12 * y   # ahead by 0.012: within noise
    much = y + rng.normal(0, 0.3, 400)                                # far better
    params = TrainParams()
    close = _candidates(y, {"linear": signal, "gbt": slightly})
    choice = model_families.select(close, names.BINARY, y, params, 400)
    assert choice.family == "linear" and "within its 95% interval" in choice.reason
    clear = _candidates(y, {"linear": signal, "gbt": much})
    assert model_families.select(clear, names.BINARY, y, params, 400).family == "gbt"
    best_rule = dataclasses.replace(params, selection="best")
    assert close["gbt"].score > close["linear"].score
    assert model_families.select(close, names.BINARY, y, best_rule, 400).family == "gbt"
    # On a table of simplest_below_rows train+eval rows or more, `simplest` takes the best score too.
    large = model_families.select(close, names.BINARY, y, params, params.simplest_below_rows)
    assert large.family == "gbt" and "simplest_below_rows" in large.reason
    assert model_families.select(close, names.BINARY, y, params, params.simplest_below_rows - 1).family == "linear"


def test_a_candidate_answering_nan_is_refused_with_its_rows_named():
    y = np.array([0, 1] * 10)
    answers = np.linspace(0, 1, 20)
    answers[[3, 7]] = np.nan
    candidate = model_families.scored("gbt", names.BINARY, y, {names.OUTPUT_SCORE: answers}, 0.5)
    assert candidate.status == "refused" and "2 row(s) (positions 3, 7)" in candidate.note
    fine = model_families.scored("linear", names.BINARY, y, {names.OUTPUT_SCORE: np.linspace(0, 1, 20)}, 0.5)
    assert model_families.select({"gbt": candidate, "linear": fine}, names.BINARY, y, TrainParams(), 20).family == "linear"


def test_unknown_family_or_rule_is_a_clear_error():
    with pytest.raises(ValueError, match="train.families"):
        model_families.check(TrainParams(families=("forest",)))
    with pytest.raises(ValueError, match="train.selection"):
        model_families.check(TrainParams(selection="fastest"))


def test_evaluate_refuses_a_model_that_answers_nan_and_names_the_rows(binary_workspace, tmp_path, monkeypatch):
    space = binary_workspace
    model_dir = str(tmp_path / "model")
    train.run(space["examples"], space["schema"], "label", model_dir, dataclasses.replace(FAST, families=("linear",)))
    real_predict = model_inputs.predict

    def some_nan(path, frame):
        outputs, metadata = real_predict(path, frame)
        outputs[names.OUTPUT_SCORE] = outputs[names.OUTPUT_SCORE].copy()
        outputs[names.OUTPUT_SCORE][:3] = np.nan
        return outputs, metadata
    monkeypatch.setattr(model_inputs, "predict", some_nan)
    result = evaluate.run(space["examples"], model_dir, str(tmp_path / "evaluation"), NO_SLICES)
    test_rows = evaluate.scored_rows(space["examples"], names.TEST, {"label": "label", "label_vocabulary": [0, 1]})
    assert not result.blessed and "NaN or infinity for 3 of" in result.reason
    assert f"rows {', '.join(str(i) for i in test_rows.index[:3])} of the test split" in result.reason
    assert np.isfinite(result.metrics["auc"]) and result.test_rows == len(test_rows) - 3
    for name in os.listdir(tmp_path / "evaluation"):      # strict JSON: no NaN token anywhere
        if name.endswith(".json"):
            json.loads((tmp_path / "evaluation" / name).read_text(), parse_constant=lambda c: pytest.fail(f"{name}: {c}"))


def test_nan_and_infinity_become_none_for_json_and_kfp_metadata():
    value = {"a": float("nan"), "b": [1.0, np.float32("inf"), 2], "c": {"d": np.float64(0.5), "e": np.int64(3)}}
    assert evaluate.finite_or_none(value) == {"a": None, "b": [1.0, None, 2], "c": {"d": 0.5, "e": 3}}


def test_one_span_trained_twice_gives_the_same_metrics_and_decisions(binary_workspace, tmp_path):
    """Reproducibility on CPU: the same data, code and params give the same metrics (to 1e-6),
    the same chosen family and the same blessing."""
    space = binary_workspace
    runs = []
    for attempt in ("first", "second"):
        model_dir = str(tmp_path / attempt / "model")
        result = train.run(space["examples"], space["schema"], "label", model_dir, FAST)
        evaluation = evaluate.run(space["examples"], model_dir, str(tmp_path / attempt / "evaluation"), NO_SLICES)
        runs.append((result, evaluation))
    (first, first_eval), (second, second_eval) = runs
    assert first.family == second.family and first_eval.blessed == second_eval.blessed
    assert first_eval.reason == second_eval.reason
    for family, candidate in first.selection["candidates"].items():
        assert second.selection["candidates"][family]["eval_score"] == pytest.approx(candidate["eval_score"], abs=1e-6)
    for key, value in first_eval.metrics.items():
        if isinstance(value, float):
            assert second_eval.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert pd.Series(first_eval.baselines).equals(pd.Series(second_eval.baselines))


def test_a_small_table_is_chosen_on_folds_of_train_and_eval(tmp_path):
    from tests.support.frames import make_frame, workspace

    space = workspace(tmp_path / "small", make_frame(400, seed=4))
    result = train.run(space["examples"], space["schema"], "label", str(tmp_path / "model"),
                       dataclasses.replace(FAST, families=("linear", "gbt")))
    candidates = result.selection["candidates"]
    assert all(c["eval_score"] > 0.6 for c in candidates.values())
    assert all("5-fold on" in c["note"] or "leads by" in c["note"] for c in candidates.values())
    assert os.path.isfile(tmp_path / "model" / "saved_model.pb")
