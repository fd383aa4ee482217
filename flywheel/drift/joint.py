"""Joint drift: a change in how features move together, which per-feature tests cannot see.

A correlation that flips sign while both marginals stay put, a category whose numbers move while
its share does not, a cluster of rows where the reference had none: every per-feature test stays
quiet. This check compares the dependence between every pair of features instead.

Encoding (fixed by the reference, so a marginal shift alone changes little): a numeric feature
becomes its normal score, the standard normal quantile of its reference mid-CDF value (a point
mass sits at the middle of its jump; values beyond the reference's range at the quantile of half
a row; a missing value at 0, the median): Pearson's correlation on normal scores is robust to
heavy tails and weighs a cluster in the tails as a normal sample would; a categorical
feature becomes an indicator per common level (at most `joint_levels` levels whose reference
share lies in [joint_min_share, 1 - joint_min_share]).

Real: for each pair of columns of different features, the correlation r of the current sample
against the reference's r0, with z = (r - r0) / sqrt(tau2 (1/n + 1/n0)), where tau2 is the
asymptotic variance of sqrt(n)·r computed from the reference's own fourth moments (valid for any
distribution, not only the normal one of Fisher's z); two-sided normal p-values, Holm-corrected
over the pairs at family-wise `joint_alpha`. Material: |r - r0| >= `joint_min_change`. The check
declares joint drift when some pair is both, and names the pairs (and the features) that moved.

The current sample is summarised by its count, the sums of the encoded columns and the sums of
their products (`JointSummary`): they add up across batches, windows and pods and subtract when a
window drops its oldest rows, so the sidecar's fleet decision is this rule on the union of the
replicas' windows, exactly. The correlation is computed from the current sample's own means and
variances, so a shift of a feature's location or scale alone does not move it.

It sees changes of pairwise (rank) dependence: correlation flips, conditional shifts within a
category, clusters off the reference's correlation structure. A change in higher-order structure
that leaves every pairwise correlation unchanged is not seen.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from flywheel.drift.profiles import CATEGORICAL, NUMERIC, CategoricalProfile, NumericProfile, Profile, _as_float, _key
from flywheel.drift.pvalues import holm, normal_quantile
from flywheel.params import DriftParams

JOINT = "joint"
MIN_ROWS = 30          # below this a correlation is mostly noise: not compared
# A pair with an indicator is tested only when the rows it rests on are expected to number at
# least this many in the smaller sample (Cochran's rule, as for chi-squared): the co-occurrences
# of two levels, or half the rows of one level beside a numeric feature. Correlations of rarer
# indicators have tails far heavier than normal (two 7% levels at n = 200: 1 expected row).
MIN_EXPECTED = 5.0


@dataclasses.dataclass(frozen=True)
class Column:
    """One encoded column: a numeric feature's rank score, or one level's indicator."""
    feature: str
    level: str | None = None

    @property
    def label(self) -> str:
        return self.feature if self.level is None else f"{self.feature}={self.level}"


@dataclasses.dataclass(eq=False)
class JointSummary:
    """Count, sums and sums of products of the encoded columns. Add or subtract two to merge them."""
    n: int
    sums: np.ndarray            # (d,)
    products: np.ndarray        # (d, d), symmetric

    kind = JOINT

    def __add__(self, other: "JointSummary") -> "JointSummary":
        self._check(other)
        return JointSummary(self.n + other.n, self.sums + other.sums, self.products + other.products)

    def __sub__(self, other: "JointSummary") -> "JointSummary":
        self._check(other)
        return JointSummary(self.n - other.n, self.sums - other.sums, self.products - other.products)

    def _check(self, other) -> None:
        if not isinstance(other, JointSummary) or other.sums.shape != self.sums.shape:
            raise ValueError("only joint summaries made with the same joint profile can be added")

    def to_dict(self) -> dict:
        upper = np.triu_indices(self.sums.size)
        return {"kind": JOINT, "n": int(self.n), "sums": self.sums.tolist(), "products": self.products[upper].tolist()}


@dataclasses.dataclass(eq=False)
class JointProfile:
    """The reference's dependence: its encoded columns, rows, correlations and their variances."""
    columns: tuple[Column, ...]
    n: float
    correlation: np.ndarray     # (d, d)
    tau2: np.ndarray            # (d, d): asymptotic variance of sqrt(n) * correlation
    shares: np.ndarray          # (d,): an indicator's reference share; 0.5 for a numeric column
    profiles: Mapping[str, Profile]   # the numeric features' profiles give the rank scores

    kind = JOINT

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.feature for c in self.columns))

    def empty(self) -> JointSummary:
        d = len(self.columns)
        return JointSummary(0, np.zeros(d), np.zeros((d, d)))

    def encode(self, columns: Mapping[str, Any], rows: int | None = None) -> np.ndarray:
        return _encode(self.columns, self.profiles, columns, rows)

    def summarize(self, columns: Mapping[str, Any], rows: int | None = None) -> JointSummary:
        """Rows of `columns` (feature -> values, aligned by row; a feature absent counts as missing)."""
        x = self.encode(columns, rows)
        return JointSummary(int(x.shape[0]), x.sum(axis=0), x.T @ x)

    def summary_from_dict(self, data: Mapping) -> JointSummary:
        d = len(self.columns)
        upper = np.triu_indices(d)
        sums = np.asarray(data["sums"], float)
        flat = np.asarray(data["products"], float)
        if data.get("kind") != JOINT or sums.size != d or flat.size != upper[0].size or int(data["n"]) < 0:
            raise ValueError(f"a joint summary of this profile has {d} sums and {upper[0].size} products")
        products = np.zeros((d, d))
        products[upper] = flat
        products = products + np.triu(products, 1).T
        return JointSummary(int(data["n"]), sums, products)

    def to_dict(self) -> dict:
        upper = np.triu_indices(len(self.columns), 1)
        return {"kind": JOINT, "columns": [[c.feature, c.level] for c in self.columns], "n": float(self.n),
                "correlation": self.correlation[upper].tolist(), "tau2": self.tau2[upper].tolist(),
                "shares": self.shares.tolist()}


def joint_profile_from_dict(data: Mapping, profiles: Mapping[str, Profile]) -> JointProfile:
    """A joint profile written by `to_dict`, with the per-feature profiles it encodes by."""
    if data.get("kind") != JOINT:
        raise ValueError(f"not a joint drift profile: kind {data.get('kind')!r}")
    columns = tuple(Column(str(f), None if level is None else str(level)) for f, level in data["columns"])
    missing = sorted({c.feature for c in columns if c.level is None} - {k for k, p in profiles.items()
                                                                        if p.kind == NUMERIC})
    if missing:
        raise ValueError(f"the joint profile encodes {', '.join(missing)} by numeric profiles that are absent")
    d = len(columns)
    upper = np.triu_indices(d, 1)
    correlation, tau2 = np.eye(d), np.zeros((d, d))
    for matrix, key in ((correlation, "correlation"), (tau2, "tau2")):
        values = np.asarray(data[key], float)
        if values.size != upper[0].size:
            raise ValueError(f"a joint profile of {d} columns has {upper[0].size} values of {key}; got {values.size}")
        matrix[upper] = values
        matrix.T[upper] = values
    shares = np.asarray(data["shares"], float)
    if shares.size != d:
        raise ValueError(f"a joint profile of {d} columns has {d} shares; got {shares.size}")
    return JointProfile(columns, float(data["n"]), correlation, tau2, shares, dict(profiles))


def _encode(columns: tuple[Column, ...], profiles: Mapping[str, Profile], values: Mapping[str, Any],
            rows: int | None) -> np.ndarray:
    if rows is None:
        rows = next((len(v) for v in values.values()), 0)
    out = np.zeros((rows, len(columns)))
    keys: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    for j, column in enumerate(columns):
        raw = values.get(column.feature)
        if column.level is None:
            if column.feature not in scores:
                x = _as_float(raw) if raw is not None else np.full(rows, math.nan)
                scores[column.feature] = normal_scores(profiles[column.feature], x)
            out[:, j] = scores[column.feature]
        else:
            if column.feature not in keys:
                keys[column.feature] = _keys(raw) if raw is not None else np.full(rows, None)
            out[:, j] = keys[column.feature] == column.level
    return out


def _keys(raw: Any) -> np.ndarray:
    """Each value as the categorical statistics name it (profiles._key), worked out once per
    distinct value: a window's column holds a few distinct values many times."""
    values = np.asarray(raw, dtype=object).reshape(-1).tolist()
    named = {v: _key(v) for v in set(values)}
    return np.asarray([named[v] for v in values], dtype=object)


def normal_scores(profile: NumericProfile, x: np.ndarray) -> np.ndarray:
    """Phi^-1 of the reference's mid-CDF at x, within half a reference row of 0 and 1; NaN -> 0."""
    mid = (profile.cdf(x) + profile.cdf(np.nextafter(x, -np.inf))) / 2
    edge = 0.5 / max(profile.n, 1.0)
    finite = np.isfinite(mid)
    out = np.zeros(x.shape)
    out[finite] = normal_quantile(np.clip(mid[finite], edge, 1 - edge))
    return out


def _levels(profile: CategoricalProfile, params: DriftParams) -> list[str]:
    if profile.n <= 0:
        return []
    share = profile.counts[:-1] / profile.n
    order = np.argsort(-share, kind="stable")
    common = [i for i in order if params.joint_min_share <= share[i] <= 1 - params.joint_min_share]
    return [profile.levels[i] for i in common[:params.joint_levels]]


def joint_profile(values: Mapping[str, Any], profiles: Mapping[str, Profile], params: DriftParams) -> JointProfile | None:
    """The joint reference of the rows of `values` (feature -> values, aligned), for the features
    that have a profile in `profiles`; None when fewer than two features can be encoded."""
    columns: list[Column] = []
    for name in sorted(set(values) & set(profiles)):
        profile = profiles[name]
        if isinstance(profile, NumericProfile):
            if profile.n > 0 and profile.sd > 0 and profile.counts.size > 3:
                columns.append(Column(name))
        elif profile.kind == CATEGORICAL:
            columns += [Column(name, level) for level in _levels(profile, params)]
    if len({c.feature for c in columns}) < 2:
        return None
    x = _encode(tuple(columns), profiles, values, None)
    n = x.shape[0]
    if n < MIN_ROWS:
        return None
    sd = x.std(axis=0)
    keep = sd > 0
    columns = [c for c, k in zip(columns, keep) if k]
    if len({c.feature for c in columns}) < 2:
        return None
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    correlation = z.T @ z / n
    np.fill_diagonal(correlation, 1.0)
    z2 = z * z
    m22 = z2.T @ z2 / n
    m31 = (z2 * z).T @ z / n            # E[z_i^3 z_j]
    m4 = np.diag(m22)
    # Var(sqrt(n) r) = E[(z_i z_j - r (z_i^2 + z_j^2) / 2)^2] (the delta method on the moments).
    tau2 = m22 - correlation * (m31 + m31.T) + correlation ** 2 / 4 * (m4[:, None] + m4[None, :] + 2 * m22)
    # Floored at the normal-theory value (1 - r^2)^2: fourth moments of a few hundred rows are
    # noisy, and an underestimate would make the test fire on noise.
    tau2 = np.maximum(tau2, (1 - correlation ** 2) ** 2)
    np.fill_diagonal(tau2, 0.0)         # a column with itself is never tested
    shares = np.asarray([0.5 if c.level is None else m for c, m in zip(columns, x[:, keep].mean(axis=0))])
    return JointProfile(tuple(columns), float(n), correlation, tau2, shares, dict(profiles))


# --- the decision ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PairDrift:
    a: str                      # column labels: feature, or feature=level
    b: str
    r_ref: float
    r_cur: float
    z: float
    p_value: float
    p_corrected: float
    drifted: bool

    @property
    def change(self) -> float:
        return self.r_cur - self.r_ref

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "change": self.change}


@dataclasses.dataclass(frozen=True)
class JointDrift:
    """The joint decision and what it rests on: the pairs that moved most, strongest first."""
    drifted: bool
    compared: bool
    pairs: int                  # pairs tested
    n_ref: float
    n_cur: int
    alpha: float
    min_change: float
    top: tuple[PairDrift, ...]  # drifted pairs first, then by |z|; at most TOP
    features: tuple[str, ...]   # the features in drifted pairs, most involved first
    reason: str

    def as_dict(self) -> dict:
        return {**{k: v for k, v in dataclasses.asdict(self).items() if k != "top"},
                "top": [p.as_dict() for p in self.top]}


TOP = 5


def _not_compared(profile: JointProfile | None, n: int, alpha: float, min_change: float, why: str) -> JointDrift:
    return JointDrift(False, False, 0, profile.n if profile else 0.0, n, alpha, min_change, (), (),
                      f"not compared: {why}")


def correlations(summary: JointSummary) -> tuple[np.ndarray, np.ndarray]:
    """(correlation matrix, standard deviations) of the summarised sample."""
    n = max(summary.n, 1)
    mean = summary.sums / n
    cov = summary.products / n - np.outer(mean, mean)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    scale = np.where(sd > 1e-12, sd, np.inf)
    return cov / np.outer(scale, scale), sd


def compare_joint(profile: JointProfile | None, summary: JointSummary | None, params: DriftParams,
                  alpha: float | None = None) -> JointDrift:
    """Decide whether the dependence between features in `summary` differs from the reference's
    really (Holm over the pairs at family-wise `alpha`, default `params.joint_alpha`) and materially
    (a correlation moved by `params.joint_min_change` or more)."""
    alpha = params.joint_alpha if alpha is None else alpha
    min_change = params.joint_min_change
    if profile is None:
        return _not_compared(None, 0, alpha, min_change, "no joint reference")
    n = 0 if summary is None else summary.n
    if n < MIN_ROWS:
        return _not_compared(profile, n, alpha, min_change, f"{n} rows (fewer than {MIN_ROWS})")
    r, sd = correlations(summary)
    d = len(profile.columns)
    i, j = np.triu_indices(d, 1)
    features = np.asarray([c.feature for c in profile.columns], dtype=object)
    rare = np.minimum(profile.shares, 1 - profile.shares)
    expected = min(n, profile.n) * rare[i] * rare[j]
    ok = ((features[i] != features[j]) & (sd[i] > 1e-12) & (sd[j] > 1e-12) & (profile.tau2[i, j] > 0)
          & (expected >= MIN_EXPECTED))
    i, j = i[ok], j[ok]
    if i.size == 0:
        return _not_compared(profile, n, alpha, min_change, "no pair of features varies in the current rows")
    r0, r1 = profile.correlation[i, j], r[i, j]
    z = (r1 - r0) / np.sqrt(profile.tau2[i, j] * (1.0 / n + 1.0 / profile.n))
    p = np.asarray([math.erfc(abs(v) / math.sqrt(2.0)) for v in z])
    adjusted = holm(p)
    drifted = (adjusted <= alpha) & (np.abs(r1 - r0) >= min_change)
    order = np.lexsort((-np.abs(z), ~drifted))
    labels = [c.label for c in profile.columns]
    top = tuple(PairDrift(labels[i[k]], labels[j[k]], float(r0[k]), float(r1[k]), float(z[k]), float(p[k]),
                          float(adjusted[k]), bool(drifted[k])) for k in order[:TOP])
    weight: dict[str, float] = {}
    for k in np.flatnonzero(drifted):
        for f in (features[i[k]], features[j[k]]):
            weight[f] = weight.get(f, 0.0) + abs(float(r1[k] - r0[k]))
    moved = tuple(sorted(weight, key=lambda f: -weight[f]))
    any_drift = bool(drifted.any())
    best = top[0]
    pair = f"{best.a} ~ {best.b}: correlation {best.r_ref:+.2f} -> {best.r_cur:+.2f}"
    test = f"p={best.p_value:.2g} (Holm over {i.size} pairs {best.p_corrected:.2g})"
    if any_drift:
        reason = (f"changed: {int(drifted.sum())} of {i.size} pairs moved (Holm <= {alpha:g} and |change| >= "
                  f"{min_change:g}); strongest {pair}, {test}; features {', '.join(moved)}")
    elif best.p_corrected <= alpha:
        reason = f"small change: {pair}, {test} <= {alpha:g} but |change| < {min_change:g}"
    else:
        reason = f"no change shown: strongest {pair}, {test} > {alpha:g}"
    return JointDrift(any_drift, True, int(i.size), profile.n, n, alpha, min_change, top, moved, reason)
