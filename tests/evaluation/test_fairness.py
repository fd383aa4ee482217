"""Fairness over slices (flywheel/evaluation/fairness.py): intervals, the Holm-corrected gate, floors, too-small
slices, crossed pairs, quantile bins, the comparison with production. Synthetic scores, no model."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from flywheel import names
from flywheel.evaluation import evaluation_metrics as em
from flywheel.evaluation import fairness
from flywheel.params import EvaluateParams

PARAMS = EvaluateParams(slice_features=("group",), slice_crosses=(), bootstrap_resamples=200)


def scored(rng, n, separation):
    """Labels and scores whose AUC is Phi(separation / sqrt(2)) in expectation (0 = chance)."""
    labels = (rng.random(n) < 0.5).astype(int)
    return labels, rng.normal(0, 1, n) + separation * labels


def table(groups: dict[str, tuple[int, float]], seed=0):
    """A frame with a `group` column, labels and scores: {group: (rows, separation)}."""
    rng = np.random.default_rng(seed)
    parts = []
    for name, (n, separation) in groups.items():
        labels, scores = scored(rng, n, separation)
        parts.append(pd.DataFrame({"group": name, "label": labels, "score": scores}))
    frame = pd.concat(parts, ignore_index=True)
    return frame, frame["label"].to_numpy(), {names.OUTPUT_SCORE: frame["score"].to_numpy()}


def by_slice(report, grouping="group"):
    return {s.slice: s for s in report.slices if s.grouping == grouping}


# --- metrics and intervals ------------------------------------------------------------------------

def test_resampled_metrics_equal_the_metrics_on_the_resampled_rows():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)          # rounding makes ties
    repeated = np.repeat(np.arange(300), rng.integers(0, 4, 300))     # a resample: rows 0..3 times each
    outputs = {names.OUTPUT_SCORE: scores}
    for metric in ("auc", "accuracy"):
        weighted = fairness.resampled_metric(metric, labels, outputs, repeated[None, :])[0]
        assert weighted == pytest.approx(em.task_metrics(names.BINARY, labels[repeated],
                                                         {names.OUTPUT_SCORE: scores[repeated]})[metric], abs=1e-12)
    target = rng.normal(0, 1, 300)
    for metric in ("rmse", "mae"):
        weighted = fairness.resampled_metric(metric, target, outputs, repeated[None, :])[0]
        assert weighted == pytest.approx(em.task_metrics(names.REGRESSION, target[repeated],
                                                         {names.OUTPUT_SCORE: scores[repeated]})[metric], abs=1e-12)
    probabilities = rng.dirichlet([1, 1, 1], 300)
    classes = rng.integers(0, 3, 300)
    weighted = fairness.resampled_metric("accuracy", classes, {names.OUTPUT_PROBABILITIES: probabilities},
                                         repeated[None, :])[0]
    assert weighted == pytest.approx(np.mean(probabilities[repeated].argmax(axis=1) == classes[repeated]))


def test_interval_covers_the_true_auc_about_as_often_as_it_claims():
    from math import erf
    truth = 0.5 * (1 + erf(1.0 / 2))        # Phi(1 / sqrt(2)) for separation 1
    rng = np.random.default_rng(2)
    covered, widths = 0, []
    for trial in range(40):
        labels, scores = scored(rng, 200, 1.0)
        result = fairness.measure_slice("g", f"t{trial}", "auc", labels, {names.OUTPUT_SCORE: scores}, PARAMS)
        covered += result.low <= truth <= result.high
        widths.append(result.high - result.low)
    assert 34 <= covered <= 40                      # 95% nominal: 38 of 40 expected
    assert 0.1 < np.mean(widths) < 0.2              # about 2 x 1.96 x 0.033 on 200 rows


def test_interval_narrows_with_rows_and_is_reproducible():
    rng = np.random.default_rng(3)
    small = fairness.measure_slice("g", "s", "auc", *_pair(*scored(rng, 100, 1.0)), PARAMS)
    large = fairness.measure_slice("g", "s", "auc", *_pair(*scored(rng, 1600, 1.0)), PARAMS)
    ratio = (small.high - small.low) / (large.high - large.low)
    assert 3 < ratio < 5.5                          # sqrt(16) = 4
    labels, scores = scored(np.random.default_rng(4), 300, 1.0)
    again = [fairness.measure_slice("g", "s", "auc", labels, {names.OUTPUT_SCORE: scores}, PARAMS) for _ in range(2)]
    assert again[0] == again[1]


def _pair(labels, scores):
    return labels, {names.OUTPUT_SCORE: scores}


def test_large_slices_are_bootstrapped_on_a_capped_subsample_with_the_width_rescaled():
    labels, scores = scored(np.random.default_rng(5), 20000, 1.0)
    full = fairness.measure_slice("g", "s", "auc", labels, {names.OUTPUT_SCORE: scores},
                                  dataclasses.replace(PARAMS, bootstrap_max_rows=20000))
    capped = fairness.measure_slice("g", "s", "auc", labels, {names.OUTPUT_SCORE: scores},
                                    dataclasses.replace(PARAMS, bootstrap_max_rows=1000))
    assert capped.value == full.value and capped.rows == 20000
    assert capped.low < capped.value < capped.high
    assert (capped.high - capped.low) == pytest.approx(full.high - full.low, rel=0.3)


# --- slices ---------------------------------------------------------------------------------------

def test_numeric_features_are_cut_into_quantile_bins_and_missing_values_are_a_slice():
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"miles": rng.gamma(2.0, 2.0, 1000), "seats": rng.integers(1, 4, 1000)})
    frame.loc[:49, "miles"] = np.nan
    frame.loc[50, "miles"] = np.inf           # read as missing, not as a bin edge
    labels = fairness.slice_labels(frame, "miles", bins=4, max_slices=20)
    counts = labels.value_counts()
    assert counts[fairness.MISSING] == 51
    bins = counts.drop(fairness.MISSING)
    assert len(bins) == 4 and bins.min() >= 235 and bins.max() <= 240      # 949 rows in quarters
    assert all(b.startswith("(") and b.endswith("]") for b in bins.index)
    # Few distinct values: each value is a slice.
    assert set(fairness.slice_labels(frame, "seats", bins=4, max_slices=20)) == {"1", "2", "3"}


def test_rare_values_beyond_max_slices_are_pooled():
    frame = pd.DataFrame({"area": [str(i % 50) for i in range(1000)]})
    labels = fairness.slice_labels(frame, "area", bins=4, max_slices=10)
    assert labels.nunique() == 10 and (labels == fairness.OTHER).sum() == 1000 - 9 * 20


def test_crossed_pairs_slice_on_both_features():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"pay": rng.choice(["card", "cash"], 800), "miles": rng.gamma(2.0, 2.0, 800),
                          "label": rng.integers(0, 2, 800), "score": rng.random(800)})
    params = dataclasses.replace(PARAMS, slice_features=("pay",), slice_crosses=("pay:miles", "pay:absent"),
                                 slice_bins=2)
    report = fairness.assess(frame, names.BINARY, frame["label"].to_numpy(),
                             {names.OUTPUT_SCORE: frame["score"].to_numpy()}, params)
    crossed = by_slice(report, "pay:miles")
    assert len(crossed) == 4 and all(" & " in name for name in crossed)
    median_bin = pd.qcut(frame["miles"], 2).astype(str)
    expected = (frame["pay"] + " & " + median_bin).value_counts().to_dict()
    assert {name: s.rows for name, s in crossed.items()} == expected
    assert report.absent == ["absent"]
    for bad in ("pay:miles:label", "pay", "pay:"):
        with pytest.raises(ValueError, match=f"slice_crosses entry '{bad}' must name two features"):
            fairness.groupings(frame, dataclasses.replace(params, slice_crosses=(bad,)))


def test_settings_the_bootstrap_cannot_use_are_named():
    frame, labels, outputs = table({"a": (100, 1.0)})
    for key, value in (("confidence", 1.0), ("bootstrap_resamples", 0), ("slice_bins", 0)):
        with pytest.raises(ValueError, match=f"evaluate.{key} must"):
            fairness.assess(frame, names.BINARY, labels, outputs, dataclasses.replace(PARAMS, **{key: value}))


def test_small_slices_are_reported_as_too_small_not_dropped_and_not_judged():
    # A 20-row slice with a terrible AUC would fail every criterion if it were judged.
    frame, labels, outputs = table({"big": (600, 1.5), "other": (600, 1.5), "tiny": (20, -2.0)})
    report = fairness.assess(frame, names.BINARY, labels, outputs, PARAMS)
    tiny = by_slice(report)["tiny"]
    assert tiny.status == fairness.TOO_SMALL and tiny.rows == 20 and tiny.value is None
    assert report.passed, report.summary()
    assert "1 too small" in report.summary()


def test_a_slice_with_one_class_is_undefined_not_judged():
    frame, labels, outputs = table({"a": (300, 1.0), "b": (300, 1.0)})
    labels = np.where(frame["group"] == "b", 0, labels)
    report = fairness.assess(frame, names.BINARY, labels, outputs, PARAMS)
    assert by_slice(report)["b"].status == fairness.UNDEFINED and report.passed


# --- criteria -------------------------------------------------------------------------------------

def test_a_gap_refuses_only_when_significant_after_holm_and_larger_than_allowed():
    # The same true gap (AUC 0.84 vs 0.64): on 40 rows per slice it could be chance, on 1,500 it is not.
    for rows, fails in ((40, False), (1500, True)):
        frame, labels, outputs = table({"good": (rows, 1.4), "poor": (rows, 0.5)}, seed=8)
        report = fairness.assess(frame, names.BINARY, labels, outputs, PARAMS)
        good, poor = by_slice(report)["good"], by_slice(report)["poor"]
        gap = report.gaps[0]
        assert gap.largest == pytest.approx(good.value - poor.value)
        assert gap.worst_slice == "poor" and gap.worst == pytest.approx(good.value - poor.value)
        assert (not report.passed) is fails, report.summary()
        if fails:
            failure = report.failures[0]
            assert failure.criterion == fairness.GAP and failure.slice == "poor" and failure.grouping == "group"
            assert failure.values["adjusted"] <= 1 - PARAMS.confidence
            assert "group=poor" in failure.message and "Holm-adjusted p" in failure.message
        else:
            assert gap.worst_adjusted > 1 - PARAMS.confidence


def test_holm_adjusts_over_every_gating_comparison():
    frame, labels, outputs = table({"a": (300, 1.0), "b": (300, 1.0), "c": (300, 1.0)}, seed=3)
    report = fairness.assess(frame, names.BINARY, labels, outputs, PARAMS)
    family = [c for c in report.comparisons if c.gates]
    assert {c.measure for c in family} == {fairness.PRIMARY}          # rates are reported, not gating
    assert {c.measure for c in report.comparisons} == {fairness.PRIMARY, *fairness.RATES}
    smallest = min(family, key=lambda c: c.p_value)
    assert smallest.adjusted == pytest.approx(min(1.0, smallest.p_value * len(family)))
    assert all(c.adjusted >= c.p_value for c in family)


def test_gaps_within_the_allowed_size_pass_even_when_significant():
    frame, labels, outputs = table({"a": (3000, 1.2), "b": (3000, 0.95)}, seed=9)
    report = fairness.assess(frame, names.BINARY, labels, outputs, PARAMS)
    worst = report.gaps[0]
    assert worst.worst_slice == "b" and 0 < worst.worst < PARAMS.max_slice_gap and worst.worst_adjusted < 0.05
    assert report.passed


def test_rate_gaps_gate_when_asked():
    # Same ranking quality, but group b's scores are shifted down: fewer of its positives pass 0.5.
    rng = np.random.default_rng(21)
    frame = pd.DataFrame({"group": ["a"] * 1500 + ["b"] * 1500})
    labels = (rng.random(3000) < 0.5).astype(int)
    logits = rng.normal(0, 1, 3000) + 2.0 * (labels - 0.5) - np.where(frame["group"] == "b", 1.5, 0.0)
    outputs = {names.OUTPUT_SCORE: 1 / (1 + np.exp(-logits))}
    assert fairness.assess(frame, names.BINARY, labels, outputs, PARAMS).passed       # AUC alone: fair
    gated = fairness.assess(frame, names.BINARY, labels, outputs,
                            dataclasses.replace(PARAMS, slice_gates=("primary", "tpr", "selection_rate")))
    failed = {(f.criterion, f.values["measure"], f.slice) for f in gated.failures}
    assert {(fairness.GAP, fairness.TPR, "b"), (fairness.GAP, fairness.SELECTION, "b")} <= failed
    assert any("true-positive rate gap on group=b" in f.message for f in gated.failures)
    with pytest.raises(ValueError, match="slice_gates"):
        fairness.assess(frame, names.BINARY, labels, outputs, dataclasses.replace(PARAMS, slice_gates=("recall",)))


def test_floor_refuses_a_slice_only_when_significantly_below():
    params = dataclasses.replace(PARAMS, min_slice_auc=0.6, max_slice_gap=1.0)
    frame, labels, outputs = table({"fine": (500, 1.5), "chance": (800, 0.0)}, seed=10)
    report = fairness.assess(frame, names.BINARY, labels, outputs, params)
    assert [(f.criterion, f.slice) for f in report.failures] == [(fairness.FLOOR, "chance")]
    assert "below the floor 0.6" in report.failures[0].message
    # On 40 rows a chance-level slice could be at 0.6: not enough evidence.
    frame, labels, outputs = table({"fine": (500, 1.5), "chance": (40, 0.0)}, seed=10)
    assert fairness.assess(frame, names.BINARY, labels, outputs, params).passed


def test_regression_ceiling_per_slice():
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"group": ["a"] * 400 + ["b"] * 400})
    target = rng.normal(0, 1, 800)
    noise = np.where(frame["group"] == "b", 3.0, 0.5) * rng.normal(0, 1, 800)
    params = dataclasses.replace(PARAMS, max_slice_rmse=2.0, max_slice_gap=10.0)
    report = fairness.assess(frame, names.REGRESSION, target, {names.OUTPUT_SCORE: target + noise}, params)
    assert report.metric == "rmse"
    assert [(f.criterion, f.slice) for f in report.failures] == [(fairness.FLOOR, "b")]
    assert "above the ceiling 2.0" in report.failures[0].message


def test_worse_than_production_on_one_slice_is_refused_with_the_paired_interval():
    frame, labels, outputs = table({"a": (600, 1.5), "b": (600, 1.5)}, seed=12)
    rng = np.random.default_rng(13)
    candidate = outputs[names.OUTPUT_SCORE].copy()
    in_b = (frame["group"] == "b").to_numpy()
    candidate[in_b] = candidate[in_b] + rng.normal(0, 1.5, in_b.sum())     # noisier on b only
    params = dataclasses.replace(PARAMS, max_slice_gap=1.0)
    report = fairness.assess(frame, names.BINARY, labels, {names.OUTPUT_SCORE: candidate}, params,
                             production=(labels, outputs))
    b = by_slice(report)["b"]
    assert b.production > b.value and b.worse_by == pytest.approx(b.production - b.value)
    assert b.worse_by_low > 0 and b.worse_by > params.slice_allowed_regression
    assert [(f.criterion, f.slice) for f in report.failures] == [(fairness.PRODUCTION, "b")]
    assert "worse than production" in report.failures[0].message
    # Against itself: nothing is worse.
    same = fairness.assess(frame, names.BINARY, labels, {names.OUTPUT_SCORE: candidate}, params,
                           production=(labels, {names.OUTPUT_SCORE: candidate}))
    assert same.passed and by_slice(same)["b"].worse_by == 0.0


def test_report_is_plain_data_with_a_one_line_summary():
    frame, labels, outputs = table({"good": (1500, 1.4), "poor": (1500, 0.3)}, seed=14)
    report = fairness.assess(frame, names.BINARY, labels, outputs, PARAMS)
    as_dict = report.to_dict()
    assert as_dict["passed"] is False and as_dict["failures"][0]["criterion"] == fairness.GAP
    assert as_dict["summary"].startswith("FAILED: auc gap on group=poor") and "\n" not in as_dict["summary"]
    import json
    json.dumps(as_dict)          # it goes into metrics.json as is
