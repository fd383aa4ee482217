"""Evaluate and push: metrics, blessing against production, atomic and idempotent pushes, rollback."""
import json
import os

import numpy as np
import pytest

from components import evaluate, push, resolve, train
from flywheel import bundle, names, storage
from flywheel import model_repository as repo
from flywheel.evaluation import evaluation_metrics as em
from flywheel.params import EvaluateParams, TrainParams
from tests.support.frames import make_frame, workspace

FAST = TrainParams(epochs=3, batch_size=128, min_steps=0)


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # rounding makes ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (len(pos) * len(neg))
    assert em.auc(labels, scores) == pytest.approx(pairwise, abs=1e-12)
    assert em.auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0


def test_blessing_rules():
    config = EvaluateParams(min_auc=0.6, allowed_regression=0.01)
    assert evaluate.bless(names.BINARY, {"auc": 0.59}, None, config)[0] is False
    assert evaluate.bless(names.BINARY, {"auc": 0.70}, None, config)[0] is True
    assert evaluate.bless(names.BINARY, {"auc": 0.70}, {"auc": 0.705}, config)[0] is True
    blessed, reason = evaluate.bless(names.BINARY, {"auc": 0.70}, {"auc": 0.75}, config)
    assert blessed is False and "worse than production" in reason
    assert evaluate.bless(names.REGRESSION, {"rmse": 1.2}, {"rmse": 1.0}, config)[0] is False
    assert evaluate.bless(names.REGRESSION, {"rmse": 1.0}, {"rmse": 1.2}, config)[0] is True


@pytest.fixture(scope="module")
def good_model(binary_workspace):
    model_dir = str(binary_workspace["root"] / "good-model")
    train.run(binary_workspace["examples"], binary_workspace["schema"], "label", model_dir, FAST, data_version="good")
    return model_dir


def _evaluate_and_push(ws, model_dir, out, repository, data_version, force=False, config=EvaluateParams(slice_features=("payment",), slice_crosses=()),
                       run_id=""):
    """resolve -> evaluate -> push, as the DAG wires them."""
    production = f"{out}-production"
    resolve.run(repository, "m", production)
    result = evaluate.run(ws["examples"], model_dir, out, config, production_dir=production, model_name="m",
                          data_version=data_version)
    pushed = push.run(model_dir, out, ws["statistics"], ws["schema"], repository, "m", production_dir=production,
                      data_version=data_version, force=force, run_id=run_id)
    return result, pushed


def test_first_push_writes_tf_serving_layout_with_baseline(binary_workspace, good_model, tmp_path):
    result, pushed = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "eval"), str(tmp_path / "repo"), "good")
    assert result.blessed and result.production_version is None and result.metrics["auc"] > 0.7
    assert {s["slice"] for s in result.fairness["slices"]} == {"card", "cash", "mobile"} and result.slice_gap >= 0
    assert pushed.pushed and pushed.version == 1
    version_dir = tmp_path / "repo" / "m" / "1"
    assert (version_dir / "saved_model.pb").exists() and (version_dir / "variables").is_dir()
    extra = version_dir / names.EXTRA_DIR
    for name in (names.BASELINE_STATS, names.BASELINE_SCHEMA, names.EVAL_PREDICTIONS, names.MODEL_CARD, names.MODEL_METADATA):
        assert (extra / name).exists(), name
    metadata = json.loads((extra / names.MODEL_METADATA).read_text())
    assert metadata["data_version"] == "good" and metadata["version"] == 1 and metadata["metrics"]["auc"] > 0.7
    card = (extra / names.MODEL_CARD).read_text()
    assert "BLESSED" in card and "payment" in card
    assert len(json.loads((extra / names.EVAL_PREDICTIONS).read_text())["values"]) == result.test_rows


def test_shuffled_label_model_is_not_blessed_against_a_good_one(binary_workspace, good_model, tmp_path):
    repository = str(tmp_path / "repo")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "eval1"), repository, "good")
    shuffled = workspace(tmp_path / "shuffled", make_frame(3000, seed=1, shuffle_label=True))["examples"]
    bad_model = str(tmp_path / "bad-model")
    train.run(shuffled, binary_workspace["schema"], "label", bad_model, FAST, data_version="shuffled")
    # Floor off, so only the comparison with production can refuse it.
    config = EvaluateParams(min_auc=0.0, slice_features=("payment",), slice_crosses=())
    result, pushed = _evaluate_and_push(binary_workspace, bad_model, str(tmp_path / "eval2"), repository, "shuffled",
                                        config=config)
    assert result.production_version == 1 and not result.blessed
    assert "worse than production" in result.reason
    assert not pushed.pushed and repo.versions(repository, "m") == [1]


def test_same_data_is_not_pushed_twice_unless_forced(binary_workspace, good_model, tmp_path):
    repository = str(tmp_path / "repo")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e1"), repository, "good")
    _, again = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e2"), repository, "good")
    assert not again.pushed and "same data" in again.reason and repo.versions(repository, "m") == [1]
    _, forced = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e3"), repository, "good", force=True)
    assert forced.pushed and repo.versions(repository, "m") == [1, 2]


def test_interrupted_push_leaves_the_repository_as_it_was(binary_workspace, good_model, tmp_path, monkeypatch):
    repository = str(tmp_path / "repo")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e1"), repository, "good")
    before = sorted(os.listdir(os.path.join(repository, "m")))
    calls = {"n": 0}
    real_copy = storage.copy_file

    def dying_copy(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption mid-push")
        real_copy(src, dst)

    monkeypatch.setattr(storage, "copy_file", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e2"), repository, "new-data")
    assert sorted(os.listdir(os.path.join(repository, "m"))) == before == ["1", names.LABELS_FILE, names.TF_SERVING_CONFIG]
    assert repo.labels(repository, "m") == {names.PRODUCTION: 1}


def test_stale_staging_is_ignored_by_readers_and_removed_by_the_next_push(binary_workspace, good_model, tmp_path):
    repository = str(tmp_path / "repo")
    stale = tmp_path / "repo" / "m" / f"{names.STAGING_PREFIX}1-dead"
    stale.mkdir(parents=True)
    assert repo.versions(repository, "m") == []
    _, pushed = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e"), repository, "good")
    assert pushed.version == 1
    assert sorted(os.listdir(os.path.join(repository, "m"))) == ["1", names.LABELS_FILE, names.TF_SERVING_CONFIG]


def test_not_blessed_changes_nothing(binary_workspace, good_model, tmp_path):
    repository = str(tmp_path / "repo")
    config = EvaluateParams(min_auc=0.99)
    result, pushed = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e"), repository, "good", config=config)
    assert not result.blessed and not pushed.pushed and "below the floor" in pushed.reason
    assert not os.path.exists(os.path.join(repository, "m"))


def test_push_publishes_a_canary_and_rollback_moves_the_production_label(binary_workspace, good_model, tmp_path):
    repository = str(tmp_path / "repo")
    _, first = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e1"), repository, "a")
    assert first.label == names.PRODUCTION                  # nothing to be a canary against
    _, second = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e2"), repository, "b")
    assert second.version == 2 and second.label == names.CANARY
    assert repo.labels(repository, "m") == {names.PRODUCTION: 1, names.CANARY: 2}
    assert repo.production_version(repository, "m") == 1     # not the highest version: the label
    config = open(os.path.join(repository, "m", names.TF_SERVING_CONFIG)).read()
    assert "versions: 1\n        versions: 2" in config and 'key: "canary"\n      value: 2' in config
    repo.set_label(repository, "m", names.PRODUCTION, 2, "promoted")   # the canary becomes production
    assert repo.labels(repository, "m") == {names.PRODUCTION: 2}
    result = push.rollback(repository, "m", 1)
    assert result.version == 1 and repo.versions(repository, "m") == [1, 2]   # nothing copied
    assert repo.production_version(repository, "m") == 1
    history = repo.label_history(repository, "m")
    assert [(h["label"], h["version"], h["was"]) for h in history] == [
        (names.PRODUCTION, 1, None), (names.CANARY, 2, None), (names.PRODUCTION, 2, 1), (names.PRODUCTION, 1, 2)]
    assert history[-1]["reason"] == "rollback from v2"
    with pytest.raises(ValueError, match="no version 7"):
        push.rollback(repository, "m", 7)


def test_a_repository_without_labels_keeps_its_meaning(binary_workspace, good_model, tmp_path):
    """Versions pushed before labels existed: the highest is production until a label is written,
    and the next push adopts that before it adds a canary."""
    repository = str(tmp_path / "repo")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e1"), repository, "a")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e2"), repository, "b",
                       config=EvaluateParams(slice_features=("payment",), slice_crosses=()))
    os.remove(repo.labels_path(repository, "m"))              # as a repository written before labels
    assert repo.labels(repository, "m") == {names.PRODUCTION: 2} and repo.production_version(repository, "m") == 2
    _, third = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e3"), repository, "c")
    assert third.label == names.CANARY and repo.labels(repository, "m") == {names.PRODUCTION: 2, names.CANARY: 3}
    with pytest.raises(ValueError, match="is production"):
        repo.set_label(repository, "m", names.SHADOW, 2, "a production version cannot be a shadow")


def test_release_as_production_skips_the_canary(binary_workspace, good_model, tmp_path):
    repository = str(tmp_path / "repo")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e1"), repository, "a")
    production = str(tmp_path / "production")
    resolve.run(repository, "m", production)
    evaluate.run(binary_workspace["examples"], good_model, str(tmp_path / "e2"), EvaluateParams(slice_features=("payment",), slice_crosses=()),
                 production_dir=production, model_name="m")
    result = push.run(good_model, str(tmp_path / "e2"), binary_workspace["statistics"], binary_workspace["schema"],
                      repository, "m", production_dir=production, data_version="b", release_as=names.PRODUCTION)
    assert result.label == names.PRODUCTION and repo.labels(repository, "m") == {names.PRODUCTION: 2}


@pytest.mark.parametrize("task,metric", [(names.MULTICLASS, "accuracy"), (names.REGRESSION, "rmse")])
def test_multiclass_and_regression_are_evaluated_with_their_own_metric(tmp_path, task, metric):
    ws = workspace(tmp_path, make_frame(1200, seed=8, task=task))
    examples = ws["examples"]
    # The linear family: its blessing asks only for a lead over the trivial baseline, which the
    # 120 test rows show beyond noise (a lead over the linear baseline they might not).
    train.run(examples, ws["schema"], "label", str(tmp_path / "model"),
              TrainParams(epochs=3, min_steps=0, families=("linear",)))
    result = evaluate.run(examples, str(tmp_path / "model"), str(tmp_path / "eval"),
                          EvaluateParams(slice_features=("payment",), slice_crosses=(), min_accuracy=0.4, max_rmse=5.0,
                                         max_slice_gap=1.0))
    assert result.task == task and result.primary_metric == metric
    assert {s["slice"] for s in result.fairness["slices"]} == {"card", "cash", "mobile"}
    if task == names.MULTICLASS:
        assert result.metrics["accuracy"] > 0.4 and result.confusion_matrix["categories"] == ["high", "low", "mid"]
        assert sum(map(sum, result.confusion_matrix["matrix"])) == result.test_rows
    else:
        assert 0 < result.metrics["rmse"] < 5.0 and result.metrics["mae"] <= result.metrics["rmse"]
        assert result.confusion_matrix is None
    assert result.blessed, result.reason


def test_push_refuses_when_production_moved_since_resolve(binary_workspace, good_model, tmp_path):
    """Evaluated against v1, but v2 was pushed and promoted meanwhile: the comparison is stale,
    nothing is pushed."""
    repository = str(tmp_path / "repo")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e1"), repository, "a")
    resolve.run(repository, "m", tmp_path / "production")
    evaluate.run(binary_workspace["examples"], good_model, str(tmp_path / "e2"), EvaluateParams(slice_features=("payment",), slice_crosses=()),
                 production_dir=str(tmp_path / "production"), model_name="m", data_version="b")
    _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e3"), repository, "c")   # v2 lands meanwhile...
    assert repo.production_version(repository, "m") == 1                                       # ...as a canary...
    repo.set_label(repository, "m", names.PRODUCTION, 2, "promoted")                            # ...and is promoted
    pushed = push.run(good_model, str(tmp_path / "e2"), binary_workspace["statistics"], binary_workspace["schema"],
                      repository, "m", production_dir=str(tmp_path / "production"), data_version="b")
    assert not pushed.pushed and "production moved from v1 to v2" in pushed.reason
    assert repo.versions(repository, "m") == [1, 2]


def test_every_run_that_reaches_push_is_recorded(binary_workspace, good_model, tmp_path):
    repository = str(tmp_path / "repo")
    _, first = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e1"), repository, "a", run_id="run-1")
    _, again = _evaluate_and_push(binary_workspace, good_model, str(tmp_path / "e2"), repository, "a", run_id="run-2")
    assert first.pushed and not again.pushed
    recorded = json.loads(open(repo.run_record_path(repository, "m", "run-2")).read())
    assert recorded["run_id"] == "run-2" and recorded["steps"]["push/pushed"]["pushed"] is False
    assert recorded["steps"]["push/pushed"]["compared_with"] == 1
    in_bundle = json.loads(open(bundle.path(repo.version_dir(repository, "m", 1), names.RUN_RECORD)).read())
    assert in_bundle["run_id"] == "run-1" and in_bundle["steps"]["push/pushed"]["version"] == 1
