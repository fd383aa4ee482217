"""p-values in plain numpy: the Kolmogorov distribution, the chi-squared survival function, Holm.

The monitoring sidecar has numpy but no scipy, and the pipeline and the sidecar must compute the
same numbers, so both use these. tests/drift/test_pvalues.py checks them against scipy.
"""
from __future__ import annotations

import math

import numpy as np

# Below this argument the alternating series for the Kolmogorov survival function converges
# slowly; the theta-function form of its CDF converges fast there (Marsaglia, Tsang & Wang 2003).
_KOLMOGOROV_SWITCH = 1.0
_TERMS = 20
_GAMMA_ITERATIONS = 10_000
_GAMMA_EPS = 1e-15
_TINY = 1e-300


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (the limit of sqrt(n)·D_n); scipy's kstwobign.sf."""
    if not x > 0:
        return 1.0
    if x < _KOLMOGOROV_SWITCH:
        k = np.arange(1, _TERMS + 1)
        cdf = math.sqrt(2 * math.pi) / x * np.sum(np.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8 * x * x)))
        return float(min(1.0, max(0.0, 1.0 - cdf)))
    k = np.arange(1, _TERMS + 1)
    sf = 2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k * k * x * x))
    return float(min(1.0, max(0.0, sf)))


def ks_pvalue(d: float, n: float, m: float) -> float:
    """Asymptotic p-value of a two-sample KS distance `d` between samples of n and m values.

    Both samples are random, so the effective size is n·m/(n+m). With ties or binned data the
    distance can only shrink, so the p-value stays conservative (a false alarm is not likelier
    than stated)."""
    if n <= 0 or m <= 0:
        return 1.0
    return kolmogorov_sf(math.sqrt(n * m / (n + m)) * d)


def _gamma_p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    ap = a
    for _ in range(_GAMMA_ITERATIONS):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _GAMMA_EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_fraction(a: float, x: float) -> float:
    # Modified Lentz evaluation of the continued fraction for Q(a, x) (Numerical Recipes 6.2).
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _GAMMA_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _GAMMA_EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a); scipy's gammaincc."""
    if a <= 0:
        raise ValueError(f"gamma_q needs a > 0, got {a}")
    if x <= 0:
        return 1.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_p_series(a, x))
    return min(1.0, _gamma_q_fraction(a, x))


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for a chi-squared variable with `df` degrees of freedom; scipy's chi2.sf."""
    return gamma_q(df / 2.0, x / 2.0)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values: reject where adjusted <= alpha keeps the family-wise error rate at
    alpha for any dependence between the tests, and rejects at least what Bonferroni rejects."""
    p = np.asarray(pvalues, float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out


# Acklam's rational approximation of the normal quantile (relative error < 1.2e-9).
_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
      -3.066479806614716e+01, 2.506628277459239e+00)
_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
      -1.328068155288572e+01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
      4.374664141464968e+00, 2.938163982698783e+00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
_P_LOW = 0.02425


def normal_quantile(p) -> np.ndarray:
    """The standard normal quantile (scipy's ndtri) of probabilities strictly inside (0, 1)."""
    p = np.asarray(p, float)
    out = np.empty_like(p)
    low, high = p < _P_LOW, p > 1 - _P_LOW
    mid = ~(low | high)
    q = p[mid] - 0.5
    r = q * q
    out[mid] = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q / \
        (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1)
    for mask, sign, tail in ((low, 1.0, p), (high, -1.0, 1 - p)):
        t = np.sqrt(-2 * np.log(tail[mask]))
        out[mask] = sign * (((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]) / \
            ((((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1)
    return out
