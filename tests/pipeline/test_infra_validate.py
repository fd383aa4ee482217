"""Infra validation: the candidate loaded by the development model server (a real process on a
loopback port), its answers compared with evaluate's, its latency measured beside production's;
push refuses what fails; a busy machine refuses nothing an idle one passes. Cost: one small
model trained (~15 s) and eight model server starts (~8 s each)."""
import json
import multiprocessing
import os
import shutil

import numpy as np
import pytest

from components import evaluate, infra_validate, machine_load, push, resolve, train
from flywheel import model_repository as repo
from flywheel import names
from flywheel.params import EvaluateParams, InfraValidateParams, TrainParams

FAST = TrainParams(epochs=3, batch_size=128, min_steps=0)
QUICK = InfraValidateParams(latency_requests=100, rate_rps=50.0, max_p99_ms=1000.0)


@pytest.fixture(scope="module")
def candidate(binary_workspace, tmp_path_factory):
    """A trained model and its evaluation (no production to compare with)."""
    root = tmp_path_factory.mktemp("infra")
    model_dir, evaluation_dir = str(root / "model"), str(root / "evaluation")
    train.run(binary_workspace["examples"], binary_workspace["schema"], "label", model_dir, FAST, data_version="infra")
    evaluate.run(binary_workspace["examples"], model_dir, evaluation_dir, EvaluateParams(slice_features=("payment",), slice_crosses=()),
                 model_name="m")
    return {"model": model_dir, "evaluation": evaluation_dir, "root": root}


def _push(ws, candidate, infra_dir, repository):
    production = str(candidate["root"] / "production")
    resolve.run(repository, "m", production)
    return push.run(candidate["model"], candidate["evaluation"], ws["statistics"], ws["schema"], repository, "m",
                    production_dir=production, data_version="infra", infra_validation_dir=infra_dir)


def test_a_sound_model_passes_with_its_figures_in_the_card_and_is_pushed(binary_workspace, candidate, tmp_path):
    out = tmp_path / "infra"
    figures = infra_validate.run(binary_workspace["examples"], candidate["model"], candidate["evaluation"], str(out),
                                 QUICK, "m")
    assert figures["passed"], figures["reason"]
    evaluated = json.load(open(f"{candidate['evaluation']}/{names.EVAL_PREDICTIONS}"))["values"]
    assert figures["rows_compared"] == len(evaluated) > 100
    assert figures["max_abs_difference"] <= 1e-5
    latency = figures["latency"]
    assert latency["requests"] == 100 and latency["errors"] == 0 and 0 < latency["p50_ms"] <= latency["p99_ms"]
    card = (out / names.MODEL_CARD).read_text()
    assert "## Infra validation" in card and "PASSED" in card and "## Blessing" in card   # evaluate's card, extended
    assert json.loads((out / names.INFRA_BLESSING_FILE).read_text())["blessed"] is True
    repository = str(tmp_path / "repo")
    pushed = _push(binary_workspace, candidate, str(out), repository)
    assert pushed.pushed and pushed.version == 1 and pushed.label == names.PRODUCTION
    extra = tmp_path / "repo" / "m" / "1" / names.EXTRA_DIR
    assert "## Infra validation" in (extra / names.MODEL_CARD).read_text()
    assert json.loads((extra / names.INFRA_VALIDATION).read_text())["latency"]["p99_ms"] == latency["p99_ms"]


def _broken_signature(model_dir: str, out: str) -> str:
    """The same model re-exported with one input dropped from serving_default (a constant stands
    in for it): the graph loads and runs, but clients' requests no longer fit its signature."""
    import tensorflow as tf

    module = tf.Module()
    module.loaded = tf.saved_model.load(model_dir)   # keeps the variables the signature reads alive
    serve = module.loaded.signatures[names.SIGNATURE]
    _, inputs = serve.structured_input_signature
    dropped = "payment"
    kept = sorted(k for k in inputs if k != dropped)

    @tf.function(input_signature=[tf.TensorSpec(inputs[k].shape, inputs[k].dtype, name=k) for k in kept])
    def broken(*columns):
        feed = dict(zip(kept, columns))
        feed[dropped] = tf.fill(tf.shape(columns[0]), "card")
        return serve(**feed)

    tf.saved_model.save(module, out, signatures={names.SIGNATURE: broken})
    shutil.copytree(f"{model_dir}/{names.EXTRA_DIR}", f"{out}/{names.EXTRA_DIR}", dirs_exist_ok=True)
    return out


def test_a_model_whose_signature_is_broken_is_never_pushed(binary_workspace, candidate, tmp_path):
    broken = _broken_signature(candidate["model"], str(tmp_path / "broken"))
    out = tmp_path / "infra"
    figures = infra_validate.run(binary_workspace["examples"], broken, candidate["evaluation"], str(out), QUICK, "m")
    assert not figures["passed"]
    assert "failed to answer the test split" in figures["reason"] and "payment" in figures["reason"]
    repository = str(tmp_path / "repo")
    result = push.run(broken, candidate["evaluation"], binary_workspace["statistics"], binary_workspace["schema"],
                      repository, "m", data_version="broken", infra_validation_dir=str(out))
    assert not result.pushed and result.reason.startswith("not blessed by infra validation")
    assert repo.versions(repository, "m") == []


def test_a_model_the_server_cannot_load_fails(binary_workspace, candidate, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(candidate["model"], corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"not a SavedModel")
    figures = infra_validate.run(binary_workspace["examples"], str(corrupt), candidate["evaluation"],
                                 str(tmp_path / "infra"), QUICK, "m")
    assert not figures["passed"] and "could not load" in figures["reason"]


def test_answers_that_differ_from_the_evaluation_fail(binary_workspace, candidate, tmp_path):
    evaluation = tmp_path / "evaluation"
    shutil.copytree(candidate["evaluation"], evaluation)
    scores = json.loads((evaluation / names.EVAL_PREDICTIONS).read_text())
    scores["values"][7] += 1e-3   # one row, slightly off: more than the 1e-5 allowed
    (evaluation / names.EVAL_PREDICTIONS).write_text(json.dumps(scores))
    figures = infra_validate.run(binary_workspace["examples"], candidate["model"], str(evaluation),
                                 str(tmp_path / "infra"), QUICK, "m")
    assert not figures["passed"] and "differ from evaluation" in figures["reason"] and "row 7" in figures["reason"]


def test_a_missed_latency_objective_fails_on_a_quiet_machine(binary_workspace, candidate, tmp_path):
    # quiet_busy_share 1.0: every machine counts as quiet, so the objective is judged.
    strict = InfraValidateParams(latency_requests=50, rate_rps=50.0, max_p99_ms=0.01,
                                 quiet_busy_share=1.0)
    figures = infra_validate.run(binary_workspace["examples"], candidate["model"], candidate["evaluation"],
                                 str(tmp_path / "infra"), strict, "m")
    assert not figures["passed"] and "objective 0.01 ms MISSED on a quiet machine" in figures["reason"]
    # No machine counts as quiet: the objective is reported, not judged.
    busy = InfraValidateParams(latency_requests=50, rate_rps=50.0, max_p99_ms=0.01,
                               quiet_busy_share=-1.0)
    figures = infra_validate.run(binary_workspace["examples"], candidate["model"], candidate["evaluation"],
                                 str(tmp_path / "infra-busy"), busy, "m")
    assert figures["passed"] and "objective 0.01 ms not judged: machine busy" in figures["reason"]


def _spin(seconds: float) -> None:
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_loaded_machine_refuses_nothing_an_idle_one_passes(binary_workspace, candidate, tmp_path):
    """The candidate timed beside production (the same model) with every core busy with other
    work: production is as slow, so the ratio holds and the model passes; the summary says the
    machine was busy and the objective was not judged."""
    settings = InfraValidateParams(latency_requests=150, rate_rps=50.0)
    idle = infra_validate.run(binary_workspace["examples"], candidate["model"], candidate["evaluation"],
                              str(tmp_path / "idle"), settings, "m", production_dir=candidate["model"])
    assert idle["passed"], idle["reason"]
    assert "production's" in idle["reason"] and idle["production_latency"]["requests"] == 150
    busy = [multiprocessing.get_context("spawn").Process(target=_spin, args=(120.0,)) for _ in range(os.cpu_count())]
    for process in busy:
        process.start()
    try:
        loaded = infra_validate.run(binary_workspace["examples"], candidate["model"], candidate["evaluation"],
                                    str(tmp_path / "loaded"), settings, "m", production_dir=candidate["model"])
    finally:
        for process in busy:
            process.terminate()
            process.join()
    print(f"\nidle: {idle['reason']}\nloaded: {loaded['reason']}")
    assert loaded["passed"], loaded["reason"]
    assert loaded["machine"]["other_cores"] >= 0.5 * os.cpu_count(), loaded["machine"]
    assert "not judged: machine busy" in loaded["reason"]


def test_materially_slower_than_production_is_refused_and_the_reason_says_so():
    quiet = machine_load.Load(cores=2, other_cores=0.0, seconds=6.0)
    busy = machine_load.Load(cores=2, other_cores=1.8, seconds=6.0)
    settings = InfraValidateParams()
    figures = {"requests": 300, "rate_rps": 50.0, "errors": 0, "p50_ms": 5.0, "max_ms": 60.0}

    def timed(p99):
        return {**figures, "p99_ms": p99}

    def pairs(ratio, excess):
        return {"pairs": 300, "median_ratio": ratio, "median_excess_ms": excess}

    passed, reason = infra_validate.judge_latency(timed(40.0), timed(12.0), pairs(3.2, 11.0), busy, settings)
    assert not passed and "materially slower than production" in reason and "x3.20, +11.0 ms" in reason
    # Slower by a ratio but by less than min_latency_excess_ms: noise on a fast model, not refused.
    assert infra_validate.judge_latency(timed(3.0), timed(1.5), pairs(2.0, 1.5), busy, settings)[0]
    # 201 ms p99 on a busy machine with the pairs alike: passes (the objective is not judged).
    passed, reason = infra_validate.judge_latency(timed(201.0), timed(120.0), pairs(1.05, 0.3), busy, settings)
    assert passed and "not judged: machine busy (other work used 1.8 of 2 cores" in reason
    # The same figures on a quiet machine: the objective refuses it.
    passed, reason = infra_validate.judge_latency(timed(201.0), timed(120.0), pairs(1.05, 0.3), quiet, settings)
    assert not passed and "objective 100 ms MISSED on a quiet machine" in reason
    # First version, busy machine: nothing to compare with and the objective not judged.
    assert infra_validate.judge_latency(timed(40.0), None, None, busy, settings)[0]


def test_requests_are_paired_in_turn_and_judged_by_the_pairs_median(monkeypatch):
    """The pairs alternate who goes first, and a burst that hits a few pairs does not move the verdict."""
    sent = []

    async def fake(requests, rate):
        sent.extend(url for url, _ in requests)
        latencies = np.array([0.005 if url == "c" else 0.004 for url, _ in requests])
        latencies[:20] = 0.4                                  # a burst of other work on the first pairs
        return latencies, np.zeros(len(requests), dtype=bool)

    monkeypatch.setattr(infra_validate, "_timed_requests", fake)
    monkeypatch.setattr(infra_validate, "_post", lambda url, body: (200, b""))
    inputs = {"x": np.arange(10.0)}
    found = infra_validate.latency({"candidate": "c", "production": "p"}, inputs,
                                   InfraValidateParams(latency_requests=100))
    assert sent[:4] == ["c", "p", "p", "c"] and len(sent) == 200
    assert found["candidate"]["requests"] == found["production"]["requests"] == 100
    assert found["paired"]["median_ratio"] == pytest.approx(1.25)
    assert found["paired"]["median_excess_ms"] == pytest.approx(1.0)
    assert found["candidate"]["p99_ms"] == pytest.approx(400.0)  # the burst shows in the p99, not in the verdict


def test_the_production_version_is_found_from_the_evaluation(tmp_path):
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    assert infra_validate.production_version_dir(str(evaluation), str(tmp_path / "repo"), "m") is None
    (evaluation / names.EVALUATION_FILE).write_text(json.dumps({"production_version": 3}))
    assert infra_validate.production_version_dir(str(evaluation), str(tmp_path / "repo"), "m") is None  # not there
    (tmp_path / "repo" / "m" / "3").mkdir(parents=True)
    assert infra_validate.production_version_dir(str(evaluation), str(tmp_path / "repo"), "m") == \
        str(tmp_path / "repo" / "m" / "3")
