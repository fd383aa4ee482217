"""The drift (and train/eval skew) decision: a change is declared when it is real and material.

Real: a two-sample test whose false-alarm rate is controlled, corrected for the number of
features compared (Holm), at the family-wise level `alpha`:
- numeric: Kolmogorov-Smirnov on the binned CDFs, with the effective size n·m/(n+m) because the
  reference is a sample too. When the reference has point masses (zeros of a zero-inflated
  feature, the levels of a count), their shares are also tested with chi-squared (point masses
  against the rest), and the feature's p-value is twice the smaller of the two (Bonferroni): KS
  is conservative on ties and weak on a change of one share, chi-squared is strong there.
- categorical: chi-squared on the 2 x k table of reference and current counts (both are
  samples: the reference counts are not treated as exact), rare levels pooled until every
  expected count is at least 5 (Cochran's rule); values the reference did not list go to the pool.
Material: an effect size in units a person reads reaches its threshold:
- numeric: the Wasserstein-1 distance in reference standard deviations (how far values moved,
  on average), or the largest change of a point mass's share (zeros 60% -> 70%), or the PSI over
  reference deciles;
- categorical: the largest change of any value's share (TFDV's L-infinity), or the PSI over the
  pooled levels.
Thresholds, alpha and their measured grounds: `DriftParams` (params.yaml `drift:`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

from flywheel.drift.pvalues import chi2_sf, holm, ks_pvalue
from flywheel.drift.profiles import (CATEGORICAL, NUMERIC, CategoricalProfile, CategoricalSummary,
                                     NumericProfile, NumericSummary, Profile, Summary)
from flywheel.params import DriftParams

MIN_EXPECTED = 5.0          # Cochran's rule for the chi-squared approximation
PSI_BINS = 10               # PSI over reference deciles, the usual definition
PSI_FLOOR = 1e-4            # a share of 0 counts as 0.01% so PSI stays finite

KS, CHI2, KS_CHI2, NONE = "ks", "chi2", "ks+chi2", "none"
WASSERSTEIN_SD, LINF = "wasserstein_sd", "linf"


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    """The decision for one feature and everything it rests on."""
    feature: str
    kind: str                   # numeric | categorical
    test: str                   # ks | ks+chi2 | chi2 | none (not compared)
    statistic: float            # KS distance D (numeric) or chi-squared (categorical)
    p_value: float
    p_corrected: float          # Holm-adjusted over the features compared
    effect: str                 # the effect size that decided (or came closest): wasserstein_sd | linf
    effect_value: float
    threshold: float
    wasserstein_sd: float       # numeric: W1 / reference sd (nan for categorical)
    linf: float                 # largest change of a value's share (numeric: of a point mass; nan if none)
    psi: float
    psi_threshold: float
    n_ref: float
    n_cur: int
    missing_ref: float
    missing_cur: int
    drifted: bool
    reason: str

    def as_dict(self) -> dict:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v
        return {k: clean(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class _Measured:
    test: str
    statistic: float
    p_value: float
    wasserstein_sd: float = math.nan
    linf: float = math.nan
    psi: float = math.nan
    detail: str = ""            # what changed, for the reason line
    not_compared: str = ""      # why no test ran


# --- the pieces ------------------------------------------------------------------------------

def pool_levels(ref, cur, min_expected: float = MIN_EXPECTED, pool_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Columns of a 2 x k table of counts, the rarest pooled together until every expected count
    is at least `min_expected`. Returns the pooled reference and current counts (in the original
    order, the pooled level last).

    `pool_last` puts the last column in the pool whatever its size: for the values the reference
    did not list. Those are many levels, each rare, summed into one column whose reference count
    is 0 by construction; standing alone it would be flagged whenever a sample misses a few rare
    levels (20 levels, n = 50: 9 false alarms in 100 at a nominal 1). In the pool it is what a
    table of every level would hold there, and a new common value still shows, as a pool whose
    current count far exceeds its reference count."""
    ref, cur = np.asarray(ref, float), np.asarray(cur, float)
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        return ref[:0], cur[:0]
    total = ref + cur
    forced = np.zeros(total.size, bool)
    if pool_last and total.size:
        forced[-1] = True
    present = total > 0
    ref, cur, total, forced = ref[present], cur[present], total[present], forced[present]
    # The expected count of a level in the smaller row is total * min(n, m) / (n + m).
    need = min_expected * (n + m) / min(n, m)
    order = np.argsort(total, kind="stable")
    pooled = forced.copy()
    pool_total = float(total[forced].sum())
    for i in order:
        if pooled[i]:
            continue
        if total[i] >= need and (pool_total == 0 or pool_total >= need):
            break
        pooled[i] = True
        pool_total += total[i]
    if pooled.any() and pool_total < need:
        # The pool is still too small: the levels left are all adequate, so join the smallest.
        rest = [i for i in order if not pooled[i]]
        if rest:
            pooled[rest[0]] = True
    keep = ~pooled
    out_ref, out_cur = ref[keep], cur[keep]
    if pooled.any():
        out_ref = np.append(out_ref, ref[pooled].sum())
        out_cur = np.append(out_cur, cur[pooled].sum())
    return out_ref, out_cur


def chi2_two_sample(ref, cur) -> tuple[float, int, float]:
    """Chi-squared test of homogeneity on a 2 x k table: (statistic, degrees of freedom, p-value).
    A table with fewer than 2 columns is no evidence: (0, 0, 1)."""
    ref, cur = np.asarray(ref, float), np.asarray(cur, float)
    if ref.size < 2:
        return 0.0, 0, 1.0
    n, m = ref.sum(), cur.sum()
    total = ref + cur
    expected_ref, expected_cur = total * n / (n + m), total * m / (n + m)
    statistic = float(np.sum((ref - expected_ref) ** 2 / expected_ref) + np.sum((cur - expected_cur) ** 2 / expected_cur))
    df = ref.size - 1
    return statistic, df, chi2_sf(statistic, df)


def psi(ref, cur) -> float:
    """Population stability index sum((q - p) ln(q / p)) over aligned counts, shares floored."""
    p, q = np.asarray(ref, float), np.asarray(cur, float)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p = np.maximum(p / p.sum(), PSI_FLOOR)
    q = np.maximum(q / q.sum(), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _linear_abs_integral(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Integral of |f| over intervals of `width` where f goes linearly from a to b."""
    same = a * b >= 0
    spread = np.abs(a) + np.abs(b)
    crossing = (a * a + b * b) / (2 * np.where(spread > 0, spread, 1.0))
    return width * np.where(same, spread / 2, crossing)


def wasserstein(profile: NumericProfile, summary: NumericSummary) -> tuple[float, float]:
    """(W1, mean difference current - reference), both in the feature's units, from the binned
    CDFs: linear inside each bin, exact beyond the reference range."""
    n, m = profile.n, summary.n
    diff = np.cumsum(profile.counts) / n - np.cumsum(summary.counts) / m     # F_ref - F_cur at each edge
    width = np.diff(profile.edges)
    a, b = diff[:-2], diff[1:-1]
    inside = _linear_abs_integral(a, b, width)
    signed_inside = width * (a + b) / 2
    w1 = float(inside.sum()) + (summary.below + summary.above) / m
    shift = float(signed_inside.sum()) + (summary.above - summary.below) / m
    return w1, shift


def decile_groups(profile: NumericProfile) -> np.ndarray:
    """The reference decile (0-9) each bin of the profile belongs to, by where the bin starts in
    the reference's CDF: PSI is computed over these groups (the monitoring sidecar exports its
    counts grouped the same way, so Prometheus computes the same PSI)."""
    start = np.concatenate([[0.0], np.cumsum(profile.counts)[:-1] / profile.n])
    return np.minimum(PSI_BINS - 1, np.floor(start * PSI_BINS + 1e-9).astype(int))


def _decile_psi(profile: NumericProfile, summary: NumericSummary) -> float:
    group = decile_groups(profile)
    return psi(np.bincount(group, profile.counts, PSI_BINS), np.bincount(group, summary.counts, PSI_BINS))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _numeric(profile: NumericProfile, summary: NumericSummary) -> _Measured:
    n, m = profile.n, summary.n
    if n <= 0 or m <= 0:
        return _Measured(NONE, math.nan, 1.0, not_compared="no reference values" if n <= 0 else "no current values")
    diff = np.cumsum(profile.counts) / n - np.cumsum(summary.counts) / m
    d = float(np.max(np.abs(diff)))
    p = ks_pvalue(d, n, m)
    test = KS
    details = []
    share_change = math.nan
    atoms = profile.atoms
    if atoms.any():
        ref = np.append(profile.counts[atoms], profile.counts[~atoms].sum())
        cur = np.append(summary.counts[atoms], summary.counts[~atoms].sum())
        _, _, p_atoms = chi2_two_sample(*pool_levels(ref, cur))
        p = min(1.0, 2 * min(p, p_atoms))
        test = KS_CHI2
        change = cur[:-1] / m - ref[:-1] / n
        k = int(np.argmax(np.abs(change)))
        share_change = float(abs(change[k]))
        value = _atom_values(profile)[k]
        details.append(f"share of {value:g} {ref[k] / n:.0%} -> {cur[k] / m:.0%}")
    w1, shift = wasserstein(profile, summary)
    if profile.sd > 0:
        w1_sd, shift_sd = w1 / profile.sd, shift / profile.sd
    else:
        w1_sd = 0.0 if w1 == 0 else math.inf
        shift_sd = 0.0 if shift == 0 else math.copysign(math.inf, shift)
    details.insert(0, f"mean {shift_sd:+.2f} sd")
    outside = int(summary.counts[0] + summary.counts[-1])
    if outside:
        details.append(f"{outside / m:.1%} outside the reference range [{profile.minimum:g}, {profile.maximum:g}]")
    return _Measured(test, d, p, w1_sd, share_change, _decile_psi(profile, summary), ", ".join(details))


def _atom_values(profile: NumericProfile) -> np.ndarray:
    # Bin i is (edges[i-1], edges[i]]; a point-mass bin is the single value edges[i].
    return profile.edges[np.flatnonzero(profile.atoms)]


def _categorical(profile: CategoricalProfile, summary: CategoricalSummary) -> _Measured:
    n, m = profile.n, summary.n
    if n <= 0 or m <= 0:
        return _Measured(NONE, math.nan, 1.0, not_compared="no reference values" if n <= 0 else "no current values")
    ref, cur = profile.counts.astype(float), summary.counts.astype(float)
    pooled_ref, pooled_cur = pool_levels(ref, cur, pool_last=True)
    statistic, _, p = chi2_two_sample(pooled_ref, pooled_cur)
    change = cur / m - ref / n
    k = int(np.argmax(np.abs(change)))
    level = f"'{profile.levels[k]}'" if k < len(profile.levels) else "values the reference did not list"
    detail = f"share of {level} {ref[k] / n:.0%} -> {cur[k] / m:.0%}"
    return _Measured(CHI2, statistic, p, math.nan, float(np.abs(change).max()), psi(pooled_ref, pooled_cur), detail)


def _measure(profile: Profile, summary: Summary) -> _Measured:
    if isinstance(profile, NumericProfile) and isinstance(summary, NumericSummary):
        return _numeric(profile, summary)
    if isinstance(profile, CategoricalProfile) and isinstance(summary, CategoricalSummary):
        return _categorical(profile, summary)
    raise TypeError(f"a {type(summary).__name__} cannot be compared with a {type(profile).__name__}")


# --- the decision ----------------------------------------------------------------------------

_TEST_NAMES = {KS: "KS", CHI2: "chi-squared", KS_CHI2: "KS + chi-squared on point masses"}


def _reason(r: _Measured, p_corrected: float, alpha: float, effect: str, value: float, threshold: float,
            psi_threshold: float, drifted: bool) -> str:
    if r.not_compared:
        return f"not compared: {r.not_compared}"
    unit = "sd" if effect == WASSERSTEIN_SD else ""
    effect_text = (f"W1 {_fmt(value)} sd" if effect == WASSERSTEIN_SD else f"L-inf {_fmt(value)}")
    test = f"{_TEST_NAMES[r.test]} p={r.p_value:.2g} (Holm {p_corrected:.2g})"
    if drifted:
        big = [f"{effect_text} >= {threshold:g}{' ' + unit if unit else ''}"] if value >= threshold else []
        if r.psi >= psi_threshold:
            big.append(f"PSI {_fmt(r.psi)} >= {psi_threshold:g}")
        return f"changed: {test} <= {alpha:g} and {' and '.join(big)}; {r.detail}"
    if p_corrected > alpha:
        return f"no change shown: {test} > {alpha:g}; {effect_text}, {r.detail}"
    return (f"small change: {test} <= {alpha:g} but {effect_text} < {threshold:g}{' ' + unit if unit else ''} "
            f"and PSI {_fmt(r.psi)} < {psi_threshold:g}; {r.detail}")


def compare(reference: Mapping[str, Profile], current: Mapping[str, Summary], params: DriftParams,
            alpha: float | None = None) -> list[FeatureDrift]:
    """Decide, for every feature of `reference`, whether `current` differs from it really (Holm-
    corrected test at family-wise `alpha`, default `params.alpha`) and materially (an effect size
    at or above its threshold in `params`). Features absent from `current` are not compared."""
    alpha = params.alpha if alpha is None else alpha
    measured: dict[str, _Measured] = {}
    for name, profile in reference.items():
        if name in current:
            measured[name] = _measure(profile, current[name])
        else:
            measured[name] = _Measured(NONE, math.nan, 1.0, not_compared="no current summary")
    tested = [name for name, r in measured.items() if r.test != NONE]
    corrected = dict(zip(tested, holm([measured[name].p_value for name in tested])))
    out = []
    for name, profile in reference.items():
        r = measured[name]
        summary = current.get(name)
        numeric = profile.kind == NUMERIC
        effect, value, threshold = _main_effect(r, numeric, params)
        p_corrected = corrected.get(name, 1.0)
        material = value >= threshold or r.psi >= params.psi
        drifted = bool(r.test != NONE and p_corrected <= alpha and material)
        out.append(FeatureDrift(
            feature=name, kind=NUMERIC if numeric else CATEGORICAL, test=r.test, statistic=r.statistic,
            p_value=r.p_value, p_corrected=p_corrected, effect=effect, effect_value=value, threshold=threshold,
            wasserstein_sd=r.wasserstein_sd, linf=r.linf, psi=r.psi, psi_threshold=params.psi, n_ref=profile.n,
            n_cur=summary.n if summary is not None else 0, missing_ref=profile.missing,
            missing_cur=summary.missing if summary is not None else 0, drifted=drifted,
            reason=_reason(r, p_corrected, alpha, effect, value, threshold, params.psi, drifted)))
    return out


def _main_effect(r: _Measured, numeric: bool, params: DriftParams) -> tuple[str, float, float]:
    """The effect size to judge by: for a numeric feature with point masses, whichever of W1 and the
    change of a point mass's share is larger against its threshold (a zero share 60% -> 70% moves
    values by only 0.125 sd but is a 10-point change of a share)."""
    candidates = [(LINF, r.linf, params.linf)]
    if numeric:
        candidates.insert(0, (WASSERSTEIN_SD, r.wasserstein_sd, params.wasserstein_sd))
    known = [c for c in candidates if math.isfinite(c[1]) or c[1] == math.inf]
    if not known:
        return candidates[0]
    return max(known, key=lambda c: c[1] / c[2] if c[2] > 0 else math.inf)


def format_table(results: list[FeatureDrift]) -> str:
    """The per-feature results as a fixed-width table for a console or a log."""
    header = f"{'feature':<24} {'test':<8} {'p':>9} {'p Holm':>9} {'effect':>16} {'PSI':>7} {'n ref':>8} {'n cur':>8}  decision"
    lines = [header]
    for r in results:
        effect = f"{r.effect_value:.3g} {'sd' if r.effect == WASSERSTEIN_SD else 'L-inf'}"
        lines.append(f"{r.feature[:24]:<24} {r.test:<8} {r.p_value:>9.2g} {r.p_corrected:>9.2g} {effect:>16} "
                     f"{r.psi:>7.3g} {r.n_ref:>8.0f} {r.n_cur:>8d}  {'DRIFT' if r.drifted else 'ok'}")
    return "\n".join(lines)
