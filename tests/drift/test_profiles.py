"""Reference profiles from raw values, summaries in their bins, merging and round trips."""
import json

import numpy as np
import pytest

from flywheel import drift

Q = 100


def zero_inflated(rng, n, zeros=0.6):
    return np.where(rng.random(n) < zeros, 0.0, rng.exponential(1.0, n))


def test_zero_inflated_reference_keeps_its_zeros_as_one_exact_point_mass():
    rng = np.random.default_rng(1)
    values = zero_inflated(rng, 5000)
    profile = drift.numeric_profile(values, Q)
    atom_bins = np.flatnonzero(profile.atoms)          # bin i is (edges[i-1], edges[i]]: value edges[i]
    zero_bin = atom_bins[profile.edges[atom_bins] == 0.0]
    assert zero_bin.size == 1 and atom_bins.size == 1
    assert profile.counts[zero_bin[0]] == np.sum(values == 0.0)
    assert profile.n == 5000 and profile.counts[0] == 0 and profile.counts[-1] == 0
    # The CDF jumps by the zero share at 0 and is continuous after it.
    share = np.mean(values == 0.0)
    assert profile.cdf([-1e-9, 0.0])[1] - profile.cdf([-1e-9, 0.0])[0] == pytest.approx(share)
    summary = profile.summarize(zero_inflated(rng, 3000, zeros=0.8))
    assert summary.counts[zero_bin[0]] == pytest.approx(0.8 * 3000, rel=0.05)


def test_integer_levels_are_point_masses_and_continuous_values_are_not():
    rng = np.random.default_rng(2)
    counts = drift.numeric_profile(rng.poisson(3.0, 4000), Q)
    levels = counts.edges[np.flatnonzero(counts.atoms)]
    assert {0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0} <= set(levels.tolist())
    assert not drift.numeric_profile(rng.normal(size=4000), Q).atoms.any()
    # A sample smaller than Q repeats every boundary; that alone makes no point mass.
    assert not drift.numeric_profile(rng.normal(size=30), Q).atoms.any()


def test_values_outside_the_reference_range_land_in_their_own_bins_with_their_distance():
    profile = drift.numeric_profile(np.linspace(0.0, 10.0, 1001), Q)
    summary = profile.summarize([-3.0, -1.0, 0.0, 5.0, 10.0, 12.0, np.nan, np.inf, "x", None])
    assert summary.counts[0] == 2 and summary.counts[-1] == 1
    assert summary.below == pytest.approx(4.0) and summary.above == pytest.approx(2.0)
    assert summary.missing == 4                    # NaN, inf, a string, None
    assert summary.n == 6


def test_numeric_summaries_merge_by_addition():
    rng = np.random.default_rng(3)
    profile = drift.numeric_profile(rng.lognormal(size=2000), Q)
    parts = [rng.lognormal(0.2, 1.1, size) for size in (17, 400, 1)]
    parts[0][3] = np.nan
    merged = profile.empty()
    for part in parts:
        merged = merged + profile.summarize(part)
    whole = profile.summarize(np.concatenate(parts))
    assert np.array_equal(merged.counts, whole.counts)
    assert (merged.missing, merged.below, merged.above) == (whole.missing, pytest.approx(whole.below),
                                                              pytest.approx(whole.above))
    other = drift.numeric_profile(rng.normal(size=50), Q)
    with pytest.raises(ValueError, match="same profile"):
        merged + other.summarize([1.0])


def test_categorical_profile_counts_unseen_values_in_one_slot():
    profile = drift.categorical_profile(np.array(["a", "b", "b", "c", None, "c", "c"], dtype=object))
    assert profile.levels == ("c", "b", "a")
    assert profile.counts.tolist() == [3.0, 2.0, 1.0, 0.0] and profile.missing == 1
    summary = profile.summarize(np.array(["a", "zz", "yy", "c", np.nan, None], dtype=object))
    assert summary.counts.tolist() == [1, 0, 1, 2] and summary.missing == 2


def test_integer_categories_match_tfdv_labels_whatever_the_dtype():
    profile = drift.categorical_profile(np.array([1, 2, 2, 3]))
    as_floats = profile.summarize(np.array([1.0, 2.0, np.nan, 3.0]))
    as_objects = profile.summarize(np.array([1, "2", None, np.int64(3)], dtype=object))
    assert as_floats.counts.tolist() == as_objects.counts.tolist() == [1, 1, 1, 0]
    assert profile.levels == ("2", "1", "3")


def test_categorical_summaries_merge_and_round_trip():
    rng = np.random.default_rng(5)
    profile = drift.categorical_profile(rng.choice(list("abcde"), 500))
    a, b = profile.summarize(rng.choice(list("abcdef"), 100)), profile.summarize(rng.choice(list("abz"), 50))
    merged = a + b
    assert merged.counts.sum() == 150 and merged.counts[-1] == b.counts[-1] + a.counts[-1]
    again = profile.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert np.array_equal(again.counts, merged.counts) and again.missing == merged.missing


def test_numeric_summary_round_trip_and_validation():
    rng = np.random.default_rng(6)
    profile = drift.numeric_profile(rng.normal(size=1000), Q)
    summary = profile.summarize(rng.normal(0.5, 2.0, 300))
    again = profile.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert np.array_equal(again.counts, summary.counts)
    assert (again.below, again.above, again.missing) == (summary.below, summary.above, summary.missing)
    with pytest.raises(ValueError, match=f"{profile.n_bins} non-negative counts"):
        profile.summary([1, 2, 3])
    with pytest.raises(ValueError):
        profile.summary(np.full(profile.n_bins, -1))


def test_profiles_from_values_choose_kind_by_dtype_or_by_name():
    columns = {"amount": np.array([1.5, 2.5, 3.0]), "city": np.array(["x", "y", "x"], dtype=object),
               "zone": np.array([1, 2, 2])}
    profiles = drift.profiles_from_values(columns, Q, categorical={"zone"})
    assert [p.kind for p in profiles.values()] == [drift.NUMERIC, drift.CATEGORICAL, drift.CATEGORICAL]
    summaries = drift.summarize(profiles, {"amount": [2.0], "zone": [2]})
    assert set(summaries) == {"amount", "zone"}


def test_empty_reference_and_hostile_sizes_stay_bounded():
    empty = drift.numeric_profile([np.nan, np.nan], Q)
    assert empty.n == 0 and empty.missing == 2
    assert empty.summarize([1.0, 2.0]).n == 2
    # A million distinct unseen strings cost one counter slot.
    profile = drift.categorical_profile(["a", "b"])
    summary = profile.summarize(np.array([f"v{i}" for i in range(200_000)], dtype=object))
    assert summary.counts.tolist() == [0, 0, 200_000]
    with pytest.raises(ValueError):
        drift.numeric_profile([1.0], 0)
