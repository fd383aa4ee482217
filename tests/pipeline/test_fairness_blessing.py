"""Fairness in the blessing: a model made deliberately unfair on one group (its scores replaced by
noise for card payers) is refused with a reason naming the slice; the fair model it was made from
is blessed; both with the default fairness gate of params.yaml (Holm over every comparison)."""
import dataclasses
import json
import shutil

import pytest

from components import evaluate, push, resolve, train
from flywheel import bundle, names, params
from flywheel.evaluation import fairness
from flywheel.params import TrainParams

FAST = TrainParams(epochs=3, batch_size=128, min_steps=0)
UNFAIR_GROUP = "card"
# The defaults of params.yaml, slicing the test table's own features.
CONFIG = dataclasses.replace(params.load().evaluate, slice_features=("payment", "distance"),
                             slice_crosses=("payment:passengers",))


@pytest.fixture(scope="module")
def fair_model(binary_workspace):
    model_dir = str(binary_workspace["root"] / "fair-model")
    train.run(binary_workspace["examples"], binary_workspace["schema"], "label", model_dir, FAST, data_version="fair")
    return model_dir


@pytest.fixture(scope="module")
def unfair_model(fair_model, tmp_path_factory):
    """The fair model behind a serving signature that answers noise for one payment type: the same
    inputs and outputs, so evaluate scores it exactly as it scores any candidate."""
    import tensorflow as tf

    served = tf.saved_model.load(fair_model)
    signature = served.signatures[names.SIGNATURE]
    specs = signature.structured_input_signature[1]
    assert set(specs) == {"distance", "passengers", "payment", "start_time"}

    class Unfair(tf.Module):
        def __init__(self):
            super().__init__()
            self.served = served

        @tf.function(input_signature=[specs["distance"], specs["passengers"], specs["payment"], specs["start_time"]])
        def serve(self, distance, passengers, payment, start_time):
            score = signature(distance=distance, passengers=passengers, payment=payment, start_time=start_time)
            # Noise that does not depend on the label: a hash of the row's start time, in [0, 1).
            noise = tf.cast(tf.strings.to_hash_bucket_fast(tf.strings.as_string(start_time), 10007), tf.float32) / 10007.0
            return {names.OUTPUT_SCORE: tf.where(tf.equal(payment, UNFAIR_GROUP), noise, score[names.OUTPUT_SCORE])}

    model_dir = str(tmp_path_factory.mktemp("unfair") / "model")
    module = Unfair()
    tf.saved_model.save(module, model_dir, signatures={names.SIGNATURE: module.serve})
    metadata = bundle.read_metadata(fair_model)
    bundle.write_metadata(model_dir, {**metadata, "data_version": "unfair"})
    return model_dir


def test_the_fair_model_is_blessed_and_its_card_shows_the_fairness_table(binary_workspace, fair_model, tmp_path):
    result = evaluate.run(binary_workspace["examples"], fair_model, str(tmp_path / "eval"), CONFIG, model_name="m")
    assert result.blessed, result.reason
    report = result.fairness
    assert report["passed"] and {s["grouping"] for s in report["slices"]} == {"payment", "distance", "payment:passengers"}
    card = (tmp_path / "eval" / names.MODEL_CARD).read_text()
    assert "## Fairness" in card and f"]({names.FAIRNESS_CHART})" in card
    for s in report["slices"]:
        assert f"| {s['grouping']} | {s['slice']} | {s['rows']} |" in card
    assert (tmp_path / "eval" / names.FAIRNESS_CHART).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_unfair_on_one_group_is_refused_naming_the_slice(binary_workspace, unfair_model, tmp_path):
    result = evaluate.run(binary_workspace["examples"], unfair_model, str(tmp_path / "eval"), CONFIG, model_name="m")
    print(f"overall auc {result.metrics['auc']:.3f}; {result.reason}")
    assert not result.blessed
    assert result.metrics["auc"] >= CONFIG.min_auc    # overall it would pass: only fairness refuses it
    assert result.reason.startswith("fairness: ")
    assert f"payment={UNFAIR_GROUP}" in result.reason and "Holm-adjusted p" in result.reason
    assert "vs the other slices'" in result.reason
    failure = result.fairness["failures"][0]
    assert (failure["criterion"], failure["grouping"], failure["slice"]) == (fairness.GAP, "payment", UNFAIR_GROUP)
    card = (tmp_path / "eval" / names.MODEL_CARD).read_text()
    assert "NOT BLESSED" in card and f"`payment` = `{UNFAIR_GROUP}`" in card
    blessing = json.loads((tmp_path / "eval" / names.BLESSING_FILE).read_text())
    assert blessing["blessed"] is False and blessing["fairness"]["passed"] is False


def test_unfair_candidate_against_fair_production_is_refused_on_that_slice(binary_workspace, fair_model,
                                                                           unfair_model, tmp_path):
    repository = str(tmp_path / "repo")
    resolve.run(repository, "m", str(tmp_path / "none"))
    evaluate.run(binary_workspace["examples"], fair_model, str(tmp_path / "e1"), CONFIG, production_dir=str(tmp_path / "none"),
                 model_name="m")
    first = push.run(fair_model, str(tmp_path / "e1"), binary_workspace["statistics"], binary_workspace["schema"],
                     repository, "m", production_dir=str(tmp_path / "none"), data_version="fair")
    assert first.pushed
    assert (tmp_path / "repo" / "m" / "1" / names.EXTRA_DIR / names.FAIRNESS_CHART).exists()
    resolve.run(repository, "m", str(tmp_path / "production"))
    # Only the per-slice comparison with production can refuse it here.
    config = dataclasses.replace(CONFIG, min_auc=0.0, allowed_regression=1.0, max_slice_gap=1.0)
    result = evaluate.run(binary_workspace["examples"], unfair_model, str(tmp_path / "e2"), config,
                          production_dir=str(tmp_path / "production"), model_name="m")
    assert not result.blessed and "worse than production" in result.reason
    print("\n".join(f["message"] for f in result.fairness["failures"]))
    failures = {(f["criterion"], f["grouping"], f["slice"]) for f in result.fairness["failures"]}
    assert (fairness.PRODUCTION, "payment", UNFAIR_GROUP) in failures
    # Other payment types are scored as production scores them: no failure names them (distance
    # bins mix card payers in, so they may fail too).
    payment_types = {s["slice"] for s in result.fairness["slices"] if s["grouping"] == "payment"}
    for criterion, grouping, name in failures:
        assert UNFAIR_GROUP in name or grouping == "distance", (criterion, grouping, name)
        assert not any(other in name for other in payment_types - {UNFAIR_GROUP})
    shutil.rmtree(tmp_path / "repo")
