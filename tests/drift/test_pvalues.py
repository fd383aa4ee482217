"""The numpy p-values against scipy (the sidecar has no scipy; the tests do)."""
import numpy as np
import pytest
from scipy import special, stats

from flywheel import drift


@pytest.mark.parametrize("x", [0.01, 0.2, 0.5, 0.8, 0.99, 1.0, 1.01, 1.36, 1.63, 2.0, 3.0, 5.0, 8.0])
def test_kolmogorov_sf_matches_scipy(x):
    assert drift.kolmogorov_sf(x) == pytest.approx(stats.kstwobign.sf(x), rel=1e-9, abs=1e-15)


def test_kolmogorov_sf_edges():
    assert drift.kolmogorov_sf(0.0) == 1.0
    assert drift.kolmogorov_sf(-1.0) == 1.0
    assert drift.kolmogorov_sf(40.0) == 0.0


@pytest.mark.parametrize("df", [1, 2, 3, 7, 19, 100, 999])
@pytest.mark.parametrize("quantile", [1e-12, 1e-6, 0.001, 0.05, 0.5, 0.95, 0.999999])
def test_chi2_sf_matches_scipy(df, quantile):
    x = stats.chi2.isf(quantile, df)
    assert drift.chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-8)


@pytest.mark.parametrize("a,x", [(0.5, 1e-3), (0.5, 50.0), (3.0, 2.9), (3.0, 4.1), (250.0, 300.0), (0.01, 0.5)])
def test_gamma_q_matches_scipy(a, x):
    assert drift.gamma_q(a, x) == pytest.approx(special.gammaincc(a, x), rel=1e-9)
    assert drift.gamma_q(a, 0.0) == 1.0
    with pytest.raises(ValueError):
        drift.gamma_q(0.0, 1.0)


def _holm_step_down(p, alpha):
    order = np.argsort(p)
    rejected = np.zeros(len(p), bool)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected[i] = True
    return rejected


def test_holm_agrees_with_the_step_down_procedure():
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.uniform(0, 0.05, rng.integers(1, 12)) ** rng.uniform(0.5, 2)
        adjusted = drift.holm(p)
        assert np.all(adjusted >= p - 1e-15) and np.all(adjusted <= np.minimum(1, p * len(p)) + 1e-15)
        for alpha in (0.01, 0.05):
            assert np.array_equal(adjusted <= alpha, _holm_step_down(p, alpha))
    assert drift.holm([]).size == 0
    assert drift.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_binned_ks_is_scipys_two_sample_ks_within_one_bucket():
    """With every reference value a boundary (Q = n) the binned distance is the exact two-sample
    KS distance up to one reference value (the profile reads the reference CDF as linear between
    boundaries, scipy as steps); the p-value is the Kolmogorov limit at the effective size."""
    rng = np.random.default_rng(4)
    for n, m in ((300, 300), (500, 80), (2000, 2500)):
        a, b = rng.normal(size=n), rng.normal(0.1, 1.1, size=m)
        profile = drift.numeric_profile(a, quantiles=n)
        result = drift.compare({"x": profile}, {"x": profile.summarize(b)}, _params())[0]
        reference = stats.ks_2samp(a, b, method="asymp")
        assert abs(result.statistic - reference.statistic) <= 1 / n + 1e-12
        assert result.p_value == pytest.approx(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * result.statistic),
                                               rel=1e-9)
        assert (result.p_value <= 0.01) == (reference.pvalue <= 0.01)


def test_chi2_two_sample_is_scipys_contingency_test():
    ref, cur = np.array([40.0, 30, 20, 10]), np.array([25.0, 35, 25, 15])
    statistic, df, p = drift.chi2_two_sample(ref, cur)
    expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert (statistic, df) == (pytest.approx(expected[0]), expected[2])
    assert p == pytest.approx(expected[1], rel=1e-9)
    assert drift.chi2_two_sample([5.0], [7.0]) == (0.0, 0, 1.0)


def _params():
    from flywheel.params import DriftParams
    return DriftParams()
