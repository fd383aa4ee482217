"""The decision rule: false alarms controlled, planted shifts caught, reasons a person can read."""
import json
import math
import re

import numpy as np
import pytest

from flywheel import drift, params
from flywheel.params import DriftParams

SETTINGS = params.load().drift
Q = SETTINGS.quantiles
LEVELS = np.array(["a", "b", "c", "d", "e"], dtype=object)
P5 = [0.35, 0.25, 0.2, 0.12, 0.08]


def sample(rng, n, mean=0.0, zeros=0.6, p5=P5):
    return {"normal": rng.normal(mean, 1.0, n), "lognormal": rng.lognormal(0.0, 1.0, n),
            "zero_inflated": np.where(rng.random(n) < zeros, 0.0, rng.exponential(1.0, n)),
            "cat5": LEVELS[rng.choice(5, n, p=p5)]}


def decide(ref, cur, settings=SETTINGS, alpha=None):
    profiles = drift.profiles_from_values(ref, Q)
    return {r.feature: r for r in drift.compare(profiles, drift.summarize(profiles, cur), settings, alpha)}


@pytest.mark.parametrize("n", [50, 400])
def test_false_alarms_stay_within_alpha_without_a_shift(n):
    rng = np.random.default_rng(n)
    runs = 150
    alarms = sum(any(r.drifted for r in decide(sample(rng, n), sample(rng, n)).values()) for _ in range(runs))
    # Family-wise alpha 0.05; 150 runs put the 99.9% upper bound of a 5% rate at ~12.
    assert alarms <= 12, alarms


def test_many_rare_levels_do_not_raise_false_alarms():
    """Rare levels one small sample holds and the other misses are not evidence of a change."""
    rng = np.random.default_rng(7)
    p = np.arange(1, 21) ** -0.8
    p /= p.sum()
    levels = np.array([f"v{i}" for i in range(20)], dtype=object)
    flagged = 0
    for _ in range(400):
        ref, cur = levels[rng.choice(20, 50, p=p)], levels[rng.choice(20, 50, p=p)]
        profile = drift.categorical_profile(ref)
        flagged += drift.compare({"c": profile}, {"c": profile.summarize(cur)}, SETTINGS, alpha=0.01)[0].drifted
    assert flagged <= 12, flagged        # 1% nominal: 4 expected, 12 is beyond the 99.9% bound


def test_planted_shifts_are_caught_and_only_they():
    rng = np.random.default_rng(8)
    ref = sample(rng, 2000)
    cur = sample(rng, 2000, mean=0.5, zeros=0.75, p5=[0.25, 0.25, 0.2, 0.12, 0.18])
    cur["lognormal"] = rng.lognormal(0.0, 1.0, 2000)
    results = decide(ref, cur)
    assert {k for k, r in results.items() if r.drifted} == {"normal", "zero_inflated", "cat5"}
    normal = results["normal"]
    assert normal.test == drift.KS and normal.effect == drift.WASSERSTEIN_SD
    assert 0.35 < normal.wasserstein_sd < 0.65 and normal.p_corrected < 1e-6
    assert "changed: KS" in normal.reason and "mean +0.5" in normal.reason
    zeros = results["zero_inflated"]
    assert zeros.test == drift.KS_CHI2 and re.search(r"share of 0 (59|6\d)% -> 7\d%", zeros.reason)
    cat = results["cat5"]
    assert cat.test == drift.CHI2 and cat.effect == drift.LINF and cat.linf == pytest.approx(0.1, abs=0.04)
    assert "share of 'a'" in cat.reason or "share of 'e'" in cat.reason
    assert results["lognormal"].reason.startswith("no change shown")


def test_zero_share_change_is_material_although_values_barely_move():
    """60% -> 70% zeros moves values by ~0.125 sd but is a 10-point change of a share."""
    rng = np.random.default_rng(9)
    result = decide(sample(rng, 3000), sample(rng, 3000, zeros=0.7))["zero_inflated"]
    assert result.drifted and result.effect == drift.LINF and result.linf >= SETTINGS.linf


def test_a_new_category_is_caught():
    rng = np.random.default_rng(10)
    ref = {"c": LEVELS[rng.choice(5, 1000, p=P5)]}
    cur = {"c": np.where(rng.random(1000) < 0.1, "new", LEVELS[rng.choice(5, 1000, p=P5)]).astype(object)}
    result = decide(ref, cur)["c"]
    assert result.drifted and re.search(r"values the reference did not list 0% -> (9|10|11)%", result.reason)


def test_a_significant_but_tiny_change_is_not_drift():
    rng = np.random.default_rng(11)
    results = decide({"x": rng.normal(size=200_000)}, {"x": rng.normal(0.03, 1.0, 200_000)})
    x = results["x"]
    assert x.p_corrected < 1e-6 and not x.drifted
    assert x.reason.startswith("small change") and x.wasserstein_sd < SETTINGS.wasserstein_sd


def test_values_beyond_the_reference_range_count_in_full():
    rng = np.random.default_rng(12)
    ref = {"x": rng.uniform(0, 1, 2000)}
    cur = {"x": np.concatenate([rng.uniform(0, 1, 1800), np.full(200, 11.0)])}
    x = decide(ref, cur)["x"]
    # W1 = 10% of values moved ~10.5 further: about 1.05 in units, / sd 0.289 = ~3.6 sd.
    assert x.drifted and x.wasserstein_sd == pytest.approx(1.05 / (1 / math.sqrt(12)), rel=0.05)
    assert re.search(r"10\.\d% outside the reference range \[0\.000\d+, 0\.99\d+\]", x.reason)


def test_holm_counts_only_compared_features_and_missing_ones_are_named():
    rng = np.random.default_rng(13)
    profiles = drift.profiles_from_values(sample(rng, 500), Q)
    current = drift.summarize(profiles, {"normal": rng.normal(size=500)})
    results = {r.feature: r for r in drift.compare(profiles, current, SETTINGS)}
    assert results["normal"].p_corrected == pytest.approx(results["normal"].p_value)
    assert results["cat5"].test == drift.NONE and results["cat5"].reason == "not compared: no current summary"
    empty = drift.compare({"x": profiles["normal"]}, {"x": profiles["normal"].summarize([])}, SETTINGS)[0]
    assert not empty.drifted and empty.reason == "not compared: no current values"


def test_thresholds_and_alpha_come_from_params():
    rng = np.random.default_rng(14)
    ref, cur = sample(rng, 3000), sample(rng, 3000, mean=0.3)
    assert decide(ref, cur)["normal"].drifted
    assert not decide(ref, cur, DriftParams(wasserstein_sd=0.5, psi=10.0))["normal"].drifted
    assert not decide(ref, cur, alpha=1e-30)["normal"].drifted


def test_constant_reference_flags_any_real_spread():
    rng = np.random.default_rng(15)
    x = decide({"x": np.full(500, 3.0)}, {"x": np.where(rng.random(500) < 0.3, 4.0, 3.0)})["x"]
    assert x.drifted and x.wasserstein_sd == math.inf
    same = decide({"x": np.full(500, 3.0)}, {"x": np.full(300, 3.0)})["x"]
    assert not same.drifted and same.wasserstein_sd == 0.0


def test_results_serialise_to_json_and_print_as_a_table():
    rng = np.random.default_rng(16)
    results = list(decide(sample(rng, 300), sample(rng, 300, mean=1.0)).values())
    loaded = json.loads(json.dumps([r.as_dict() for r in results]))
    assert loaded[0]["feature"] == "normal" and loaded[0]["drifted"] is True
    assert loaded[3]["wasserstein_sd"] is None                 # categorical: no W1
    table = drift.format_table(results)
    assert table.splitlines()[1].split()[0] == "normal" and table.splitlines()[1].endswith("DRIFT")


def test_params_yaml_holds_the_measured_defaults():
    """The benchmark figures quoted in DriftParams hold for these values."""
    assert params.load().drift == DriftParams()
