"""The joint drift check (flywheel/drift/joint.py): what it sees, what it leaves to the per-feature
rule, its summaries' arithmetic and its file. Rates (false alarms, power) are measured by
`make bench-drift`, section 4."""
import math
import re

import numpy as np
import pytest
from scipy import special, stats

from flywheel import bundle, drift
from flywheel.drift import joint
from flywheel.drift.pvalues import normal_quantile
from flywheel.params import DriftParams

PARAMS = DriftParams()
LEVELS = np.array(["a", "b", "c", "d"], dtype=object)


def table(rng, n, rho=0.6, within_b=0.0, cluster=0.0):
    u = rng.normal(size=n)
    v = rho * u + math.sqrt(1 - rho * rho) * rng.normal(size=n)
    if cluster:
        new = rng.random(n) < cluster
        u[new], v[new] = rng.normal(2, 0.25, new.sum()), rng.normal(-2, 0.25, new.sum())
    group = LEVELS[rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])]
    w = rng.normal(size=n) + within_b * (group == "b")
    return {"x": u, "y": np.exp(v), "group": group, "w": w}


def reference(rng, n=5000):
    ref = table(rng, n)
    profiles = drift.profiles_from_values(ref, PARAMS.quantiles)
    return joint.joint_profile(ref, profiles, PARAMS), profiles


def test_correlation_flip_with_the_same_marginals_is_joint_drift_only():
    rng = np.random.default_rng(1)
    ref, profiles = reference(rng)
    flipped = table(rng, 2000, rho=-0.6)
    result = joint.compare_joint(ref, ref.summarize(flipped), PARAMS)
    assert result.drifted and result.features[:2] in (("x", "y"), ("y", "x"))
    top = result.top[0]
    assert {top.a, top.b} == {"x", "y"} and top.r_ref > 0.5 and top.r_cur < -0.5 and top.p_corrected < 1e-6
    assert re.search(r"strongest x ~ y: correlation \+0\.\d\d -> -0\.\d\d", result.reason)
    per_feature = drift.compare(profiles, drift.summarize(profiles, flipped), PARAMS)
    assert not any(r.drifted for r in per_feature)


def test_a_new_cluster_and_a_shift_within_one_level_are_named():
    rng = np.random.default_rng(2)
    ref, _ = reference(rng)
    cluster = joint.compare_joint(ref, ref.summarize(table(rng, 5000, cluster=0.05)), PARAMS)
    assert cluster.drifted and set(cluster.features[:2]) == {"x", "y"}
    within = joint.compare_joint(ref, ref.summarize(table(rng, 5000, within_b=0.5)), PARAMS)
    assert within.drifted and within.top[0].drifted and {within.top[0].a, within.top[0].b} == {"group=b", "w"}


def test_marginal_shifts_alone_and_a_same_distribution_sample_are_not_joint_drift():
    rng = np.random.default_rng(3)
    ref, _ = reference(rng)
    same = joint.compare_joint(ref, ref.summarize(table(rng, 5000)), PARAMS)
    assert same.compared and not same.drifted and same.reason.startswith("no change shown")
    moved = table(rng, 5000)
    moved["x"] = 0.5 + 1.5 * moved["x"]          # location and scale: the per-feature rule's business
    assert not joint.compare_joint(ref, ref.summarize(moved), PARAMS).drifted


def test_too_few_rows_or_no_reference_is_not_compared():
    rng = np.random.default_rng(4)
    ref, _ = reference(rng, 500)
    small = joint.compare_joint(ref, ref.summarize(table(rng, 10, rho=-0.9)), PARAMS)
    assert not small.compared and not small.drifted and "fewer than" in small.reason
    assert joint.compare_joint(None, None, PARAMS).reason == "not compared: no joint reference"
    one_feature = {"x": rng.normal(size=100)}
    assert joint.joint_profile(one_feature, drift.profiles_from_values(one_feature, 100), PARAMS) is None


def test_rare_level_pairs_are_left_out_at_small_n():
    rng = np.random.default_rng(5)
    ref, _ = reference(rng)
    small = joint.compare_joint(ref, ref.summarize(table(rng, 100)), PARAMS)
    large = joint.compare_joint(ref, ref.summarize(table(rng, 5000)), PARAMS)
    # group=d (10%) beside a numeric: 100 * 0.1 * 0.5 = 5 expected rows; beside group levels: fewer.
    assert small.pairs < large.pairs


def test_summaries_add_subtract_and_round_trip():
    rng = np.random.default_rng(6)
    ref, _ = reference(rng, 1000)
    a, b = table(rng, 300), table(rng, 200)
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    sa, sb, sab = ref.summarize(a), ref.summarize(b), ref.summarize(both)
    assert (sa + sb).n == sab.n == 500
    np.testing.assert_allclose((sa + sb).products, sab.products)
    np.testing.assert_allclose((sab - sb).sums, sa.sums)
    back = ref.summary_from_dict(sab.to_dict())
    np.testing.assert_allclose(back.products, sab.products)
    with pytest.raises(ValueError, match="joint summary of this profile"):
        ref.summary_from_dict({**sab.to_dict(), "sums": [0.0]})


def test_reference_travels_with_the_profiles_file(tmp_path):
    rng = np.random.default_rng(7)
    ref, profiles = reference(rng, 1000)
    path = str(tmp_path / "profiles.json")
    bundle.write_profiles(path, profiles, ref)
    back = bundle.read_joint(path)
    assert back.columns == ref.columns and back.n == ref.n
    np.testing.assert_allclose(back.correlation, ref.correlation)
    np.testing.assert_allclose(back.tau2, ref.tau2)
    cur = table(rng, 400, rho=-0.6)
    assert joint.compare_joint(back, back.summarize(cur), PARAMS) == joint.compare_joint(ref, ref.summarize(cur), PARAMS)
    assert set(bundle.read_profiles(path)) == set(profiles)
    bundle.write_profiles(path, profiles)
    assert bundle.read_joint(path) is None
    (tmp_path / "bad.json").write_text('{"profiles": {}, "joint": {"kind": "joint", "columns": [["x", null]]}}')
    with pytest.raises(ValueError, match="bad.json holds no usable joint drift reference.*x"):
        bundle.read_joint(str(tmp_path / "bad.json"))


def test_tau2_is_the_sampling_variance_of_the_correlation():
    """sqrt(n)·r's variance from the reference's fourth moments, against the spread of r over
    fresh samples of normal scores with correlation 0.6: normal theory says (1 - 0.36)^2."""
    rng = np.random.default_rng(8)
    ref, _ = reference(rng, 20000)
    i, j = ref.columns.index(joint.Column("x")), ref.columns.index(joint.Column("y"))
    assert ref.tau2[i, j] == pytest.approx((1 - 0.36) ** 2, rel=0.1)
    rs = [joint.correlations(ref.summarize(table(rng, 1000)))[0][i, j] for _ in range(300)]
    assert np.var(rs) * 1000 == pytest.approx(ref.tau2[i, j], rel=0.2)


def test_normal_quantile_matches_scipy():
    p = np.concatenate([np.linspace(1e-12, 1 - 1e-12, 20001), [0.02425, 0.97575, 1e-300]])
    assert np.max(np.abs(normal_quantile(p) - special.ndtri(p)) / np.maximum(1, np.abs(special.ndtri(p)))) < 1e-8
    assert normal_quantile([0.5])[0] == pytest.approx(0.0, abs=1e-12)
    assert normal_quantile([stats.norm.cdf(1.5)])[0] == pytest.approx(1.5, rel=1e-8)


def test_the_sidecars_joint_window_holds_the_summary_of_the_rows_it_keeps():
    from monitoring.joint_window import JointWindow
    rng = np.random.default_rng(10)
    ref, _ = reference(rng, 1000)
    window = JointWindow(ref)
    batches = [table(rng, 100) for _ in range(5)]
    for batch in batches:
        window.push(window.summarize(100, {k: list(v) for k, v in batch.items()}))
    window.pop()
    window.pop()
    kept = {k: np.concatenate([b[k] for b in batches[2:]]) for k in batches[0]}
    expected = ref.summarize(kept)
    assert window.total.n == 300
    np.testing.assert_allclose(window.total.products, expected.products, atol=1e-9)
    np.testing.assert_allclose(window.total.sums, expected.sums, atol=1e-9)
