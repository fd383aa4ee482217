"""Profiles read from real TFDV statistics agree with the exact profiles of the same values."""
import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from flywheel import drift, params  # noqa: E402

SETTINGS = params.load().drift
ROWS = 4000


def table(rng, rows):
    return pd.DataFrame({
        "normal": rng.normal(10.0, 2.0, rows),
        "lognormal": rng.lognormal(0.0, 1.0, rows),
        "rain_mm": np.where(rng.random(rows) < 0.6, 0.0, np.round(rng.exponential(5.0, rows), 1)),
        "visits": rng.poisson(3.0, rows),
        "with_missing": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows)),
        "city": rng.choice(["north", "south", "east", "west", "centre"], rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
        "zone": rng.choice([3, 7, 11], rows),
    })


@pytest.fixture(scope="module")
def reference():
    import tensorflow_data_validation as tfdv
    frame = table(np.random.default_rng(11), ROWS)
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(frame))
    tfdv.get_feature(schema, "zone").int_domain.is_categorical = True
    options = tfdv.StatsOptions(schema=schema, num_quantiles_histogram_buckets=SETTINGS.quantiles)
    stats = tfdv.generate_statistics_from_dataframe(frame, stats_options=options)
    return frame, drift.profiles_from_statistics(stats)


def exact_profiles(frame):
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    columns["city"] = columns["city"].astype(object)
    return drift.profiles_from_values(columns, SETTINGS.quantiles, categorical={"zone"})


def test_every_feature_gets_the_profile_kind_tfdv_statistics_imply(reference):
    frame, from_stats = reference
    kinds = {name: p.kind for name, p in from_stats.items()}
    assert kinds == {"normal": "numeric", "lognormal": "numeric", "rain_mm": "numeric", "visits": "numeric",
                     "with_missing": "numeric", "city": "categorical", "zone": "categorical"}
    assert from_stats["with_missing"].missing == frame["with_missing"].isna().sum()
    assert from_stats["normal"].n == ROWS


def test_numeric_cdfs_agree_with_the_exact_ones(reference):
    frame, from_stats = reference
    exact = exact_profiles(frame)
    for name in ("normal", "lognormal", "rain_mm", "visits", "with_missing"):
        values = frame[name].dropna().to_numpy()
        grid = np.unique(np.concatenate([exact[name].edges, np.quantile(values, np.linspace(0, 1, 501))]))
        gap = np.max(np.abs(from_stats[name].cdf(grid) - exact[name].cdf(grid)))
        assert gap <= 1.0 / SETTINGS.quantiles, (name, gap)
        assert from_stats[name].mean == pytest.approx(values.mean(), rel=1e-6)
        assert from_stats[name].sd == pytest.approx(values.std(), rel=1e-3)


def test_point_masses_read_from_tfdv_are_the_exact_ones(reference):
    frame, from_stats = reference
    exact = exact_profiles(frame)
    for name in ("rain_mm", "visits"):
        stats_atoms = dict(zip(from_stats[name].edges[np.flatnonzero(from_stats[name].atoms)],
                               from_stats[name].counts[from_stats[name].atoms]))
        exact_atoms = dict(zip(exact[name].edges[np.flatnonzero(exact[name].atoms)],
                               exact[name].counts[exact[name].atoms]))
        assert set(stats_atoms) == set(exact_atoms), name
        for value, count in exact_atoms.items():
            assert stats_atoms[value] == pytest.approx(count, rel=0.01), (name, value)
    assert exact["rain_mm"].counts[exact["rain_mm"].atoms][0] == np.sum(frame["rain_mm"] == 0)


def test_categorical_counts_are_tfdvs(reference):
    frame, from_stats = reference
    for name in ("city", "zone"):
        counts = frame[name].astype(str).value_counts()
        profile = from_stats[name]
        assert dict(zip(profile.levels, profile.counts[:-1])) == counts.to_dict()
        assert profile.counts[-1] == 0


def test_decisions_and_numbers_agree_on_the_same_current_samples(reference):
    frame, from_stats = reference
    exact = exact_profiles(frame)
    rng = np.random.default_rng(12)
    unshifted = table(rng, 1500)
    shifted = table(rng, 1500)
    shifted["normal"] += 1.0                              # +0.5 sd
    shifted["rain_mm"] = np.where(rng.random(1500) < 0.8, 0.0, shifted["rain_mm"])
    shifted["city"] = np.where(rng.random(1500) < 0.15, "harbour", shifted["city"])
    for current, flagged in ((unshifted, set()), (shifted, {"normal", "rain_mm", "city"})):
        columns = {name: current[name].to_numpy() for name in current.columns}
        columns["city"] = columns["city"].astype(object)
        a = drift.compare(from_stats, drift.summarize(from_stats, columns), SETTINGS)
        b = drift.compare(exact, drift.summarize(exact, columns), SETTINGS)
        assert {r.feature for r in a if r.drifted} == {r.feature for r in b if r.drifted} == flagged
        for x, y in zip(a, b):
            assert x.statistic == pytest.approx(y.statistic, abs=1.5 / SETTINGS.quantiles), x.feature
            if x.kind == "numeric":
                assert x.wasserstein_sd == pytest.approx(y.wasserstein_sd, abs=0.02), x.feature
