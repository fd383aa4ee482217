"""Detection and false-alarm rates of the drift rule, beside TFDV's fixed-threshold rule.

    .venv/bin/python benchmarks/bench_drift.py [--reps 400] [--quick] [--sizes 50,200,1000,5000]
        [--joint-reps 300] [--joint-sizes 200,1000,5000] [--joint-only]
    make bench-drift [QUICK=1]

1. Controlled grid. Reference and current samples of equal size n, five features: normal,
   lognormal, 60% zeros + exponential, categorical with 5 and 20 levels. Each cell shifts one
   feature (or none) and repeats `--reps` times with fresh samples. Printed: how often the
   shifted feature is flagged (detection), and with no shift how often any feature is flagged
   (false alarms), for
   - the rule (flywheel.drift.compare with params.yaml `drift:`): Holm-corrected KS /
     chi-squared at family-wise alpha, and an effect size at or above its threshold;
   - the old rule, measured in the same run on the same samples: TFDV's approximate
     Jensen-Shannon divergence > 0.15 on 10 equal-width buckets (numeric), L-infinity > 0.1
     (categorical), from the ports of TFDV's comparators in benchmarks/tfdv_measures.py.
2. False blocks. Stationary generated tables of 150 to 1,500 rows with realistic mixed columns
   and a string label, randomly re-split 80/10/10; train is compared with eval (the label
   included) at `skew_alpha`. Printed: the share of splits with any feature flagged, beside the
   old skew thresholds (JSD 0.2, L-infinity 0.1).
3. Resolution. Detection with numeric profiles of Q quantile buckets against Q = n (every value
   its own boundary: the exact empirical CDF), to show Q is enough.
4. Joint drift (flywheel/drift/joint.py), reference and current of n rows each: two numeric
   features with rank correlation +0.6 (one normal, one lognormal), a zero-inflated one, a
   5-level category and a numeric whose mean depends on it, a 20-level category. Shifts whose
   marginals stay (nearly) put: the correlation flips to -0.6; 5% of rows come from a new
   cluster where the reference had none (+2 sd, -2 sd: 0.005% of the reference lies that far off
   its correlation), or almost none (+1.5 sd, -1.5 sd: 0.4%); within one level (25% of rows) the
   numeric moves +0.5 sd,
   the level's share unchanged. Printed per n: how often the joint check fires (with a Wilson
   95% interval), how often it names the moved features first, and how often the per-feature
   rule flags anything on the same samples; then the cost of one decision at n = 5,000.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flywheel import drift, params  # noqa: E402
from flywheel.drift import joint  # noqa: E402
from benchmarks.tfdv_measures import equi_width_histogram, histogram_jsd, linf  # noqa: E402

OLD_JSD, OLD_LINF = 0.15, 0.1                  # TFDV comparators as validate used them for drift
OLD_SKEW_JSD, OLD_SKEW_LINF = 0.2, 0.1
CAT5 = np.array([0.35, 0.25, 0.20, 0.12, 0.08])
CAT20 = np.arange(1, 21) ** -0.8 / np.sum(np.arange(1, 21) ** -0.8)   # 21% ... 1.9%
NUMERIC = ("normal", "lognormal", "zero_inflated")
CATEGORICAL = ("cat5", "cat20")


@dataclasses.dataclass(frozen=True)
class Shift:
    label: str
    feature: str | None
    size: float = 0.0


SHIFTS = (
    Shift("no shift", None),
    Shift("normal: mean +0.25 sd", "normal", 0.25),
    Shift("normal: mean +0.5 sd", "normal", 0.5),
    Shift("lognormal: scale x1.5", "lognormal", 1.5),
    Shift("zeros 60% -> 70%", "zero_inflated", 0.7),
    Shift("zeros 60% -> 80%", "zero_inflated", 0.8),
    Shift("cat5: 5% moved", "cat5", 0.05),
    Shift("cat5: 10% moved", "cat5", 0.10),
    Shift("cat20: 5% moved", "cat20", 0.05),
    Shift("cat20: 10% moved", "cat20", 0.10),
)


def _moved(p: np.ndarray, share: float) -> np.ndarray:
    """`share` of all values moved from the commonest level to the rarest."""
    q = p.copy()
    q[0] -= share
    q[-1] += share
    return q


def sample(rng: np.random.Generator, n: int, shift: Shift | None = None) -> dict[str, np.ndarray]:
    def size(feature: str, default: float) -> float:
        return shift.size if shift is not None and shift.feature == feature else default
    zeros = size("zero_inflated", 0.6)
    levels5 = np.array([f"l{i}" for i in range(5)], dtype=object)
    levels20 = np.array([f"v{i:02d}" for i in range(20)], dtype=object)
    return {
        "normal": rng.normal(size("normal", 0.0), 1.0, n),
        "lognormal": size("lognormal", 1.0) * rng.lognormal(0.0, 1.0, n),
        "zero_inflated": np.where(rng.random(n) < zeros, 0.0, rng.exponential(1.0, n)),
        "cat5": levels5[rng.choice(5, n, p=_moved(CAT5, size("cat5", 0.0)))],
        "cat20": levels20[rng.choice(20, n, p=_moved(CAT20, size("cat20", 0.0)))],
    }


def new_rule(ref: dict, cur: dict, settings: params.DriftParams, alpha: float, quantiles: int | None = None) -> set[str]:
    profiles = drift.profiles_from_values(ref, quantiles or settings.quantiles)
    results = drift.compare(profiles, drift.summarize(profiles, cur), settings, alpha=alpha)
    return {r.feature for r in results if r.drifted}


def _counts(values: np.ndarray) -> dict[str, float]:
    unique, count = np.unique(values.astype(str), return_counts=True)
    return dict(zip(unique.tolist(), count.astype(float).tolist()))


def old_rule(ref: dict, cur: dict, jsd_threshold: float, linf_threshold: float) -> set[str]:
    flagged = set()
    for name, values in ref.items():
        if values.dtype.kind in "OU":
            if linf(_counts(values), _counts(cur[name])) > linf_threshold:
                flagged.add(name)
        elif histogram_jsd(equi_width_histogram(values), equi_width_histogram(cur[name])) > jsd_threshold:
            flagged.add(name)
    return flagged


def _progress(text: str) -> None:
    print(f"\r{text:<70}", end="", file=sys.stderr, flush=True)


def grid(sizes: list[int], reps: int, settings: params.DriftParams, seed: int):
    """rates[(shift label, n)] = (new, old): detection of the shifted feature, or any-feature false alarms."""
    rates = {}
    for n in sizes:
        for cell, shift in enumerate(SHIFTS):
            _progress(f"grid n={n}: {shift.label}")
            rng = np.random.default_rng([seed, n, cell])
            hits_new = hits_old = 0
            for _ in range(reps):
                ref, cur = sample(rng, n), sample(rng, n, shift)
                new = new_rule(ref, cur, settings, settings.alpha)
                old = old_rule(ref, cur, OLD_JSD, OLD_LINF)
                if shift.feature is None:
                    hits_new += bool(new)
                    hits_old += bool(old)
                else:
                    hits_new += shift.feature in new
                    hits_old += shift.feature in old
            rates[(shift.label, n)] = (hits_new / reps, hits_old / reps)
    return rates


LABELS = np.array(["low", "medium", "high"], dtype=object)


def stationary_table(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """A table like users bring: skewed amounts, a zero-inflated measure, counts, a rounded
    measurement, 5- and 20-level categoricals, a 3-class string label that depends on them."""
    amount = np.round(rng.lognormal(3.0, 0.9, rows), 2)
    rain = np.where(rng.random(rows) < 0.57, 0.0, np.round(rng.gamma(0.8, 6.0, rows), 1))
    visits = rng.poisson(2.5, rows).astype(np.int64)
    temperature = np.round(rng.normal(14.0, 7.0, rows), 1)
    region = np.array([f"r{i}" for i in range(5)], dtype=object)[rng.choice(5, rows, p=CAT5)]
    store = np.array([f"s{i:02d}" for i in range(20)], dtype=object)[rng.choice(20, rows, p=CAT20)]
    score = np.log(amount) / 2 + (rain > 0) - temperature / 20 + rng.normal(0, 0.8, rows)
    label = LABELS[np.digitize(score, np.quantile(score, [0.4, 0.8]))]
    return {"amount": amount, "rain_mm": rain, "visits": visits, "temperature": temperature,
            "region": region, "store": store, "label": label}


def false_blocks(table_sizes: list[int], reps: int, settings: params.DriftParams, seed: int):
    rates = {}
    for rows in table_sizes:
        _progress(f"false blocks: {rows} rows")
        rng = np.random.default_rng([seed, rows])
        new_blocks = old_blocks = 0
        for _ in range(reps):
            table = stationary_table(rng, rows)
            order = rng.permutation(rows)
            train, evaluation = order[: int(0.8 * rows)], order[int(0.8 * rows): int(0.9 * rows)]
            ref = {k: v[train] for k, v in table.items()}
            cur = {k: v[evaluation] for k, v in table.items()}
            profiles = drift.profiles_from_values(ref, settings.quantiles)
            results = drift.compare(profiles, drift.summarize(profiles, cur), settings, alpha=settings.skew_alpha)
            new_blocks += any(r.drifted for r in results)
            old_blocks += bool(old_rule(ref, cur, OLD_SKEW_JSD, OLD_SKEW_LINF))
        rates[rows] = (new_blocks / reps, old_blocks / reps, len(evaluation))
    return rates


RESOLUTION_SHIFTS = ("no shift", "normal: mean +0.25 sd", "lognormal: scale x1.5", "zeros 60% -> 70%")


def resolution(sizes: list[int], quantiles: list[int], reps: int, settings: params.DriftParams, seed: int):
    """rates[(n, shift, Q)] = detection (any numeric feature for no shift); errors[(n, Q)] = mean
    absolute differences of KS D and of W1 (sd) from the exact CDF's, over all features and runs."""
    rates, errors = {}, {}
    by_label = {s.label: s for s in SHIFTS}
    for n in sizes:
        diffs = {q: [] for q in quantiles}
        for label in RESOLUTION_SHIFTS:
            shift = by_label[label]
            _progress(f"resolution n={n}: {label}")
            rng = np.random.default_rng([seed, n, 99, RESOLUTION_SHIFTS.index(label)])
            hits = {q: 0 for q in quantiles + ["exact"]}
            for _ in range(reps):
                ref = {k: v for k, v in sample(rng, n).items() if k in NUMERIC}
                cur = {k: v for k, v in sample(rng, n, shift).items() if k in NUMERIC}
                results = {}
                for q in hits:
                    profiles = drift.profiles_from_values(ref, n if q == "exact" else q)
                    results[q] = drift.compare(profiles, drift.summarize(profiles, cur), settings)
                    flagged = {r.feature for r in results[q] if r.drifted}
                    hits[q] += bool(flagged) if shift.feature is None else shift.feature in flagged
                for q in quantiles:
                    for r, x in zip(results[q], results["exact"]):
                        diffs[q].append((abs(r.statistic - x.statistic), abs(r.wasserstein_sd - x.wasserstein_sd)))
            for q, h in hits.items():
                rates[(n, label, q)] = h / reps
        for q in quantiles:
            errors[(n, q)] = tuple(np.mean(np.asarray(diffs[q]), axis=0))
    return rates, errors


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def print_grid(rates, sizes):
    print("\n1. Controlled grid: detection of the shifted feature; 'no shift' row = any-feature false alarms")
    head = " | ".join(f"n={n:<5}" for n in sizes)
    print(f"{'':<24} | {'rule: ' + head:<{9 * len(sizes) + 6}} || old (TFDV JSD 0.15 / L-inf 0.1): {head}")
    for shift in SHIFTS:
        new = " | ".join(f"{_pct(rates[(shift.label, n)][0]):<7}" for n in sizes)
        old = " | ".join(f"{_pct(rates[(shift.label, n)][1]):<7}" for n in sizes)
        print(f"{shift.label:<24} | rule: {new} || old: {old}")


def print_false_blocks(rates):
    print("\n2. False blocks: random 80/10/10 re-splits of stationary tables, train vs eval, any feature flagged")
    print(f"{'rows':>6} {'eval rows':>10} {'rule':>8} {'old (JSD 0.2 / L-inf 0.1)':>27}")
    for rows, (new, old, n_eval) in rates.items():
        print(f"{rows:>6} {n_eval:>10} {_pct(new):>8} {_pct(old):>27}")


def print_resolution(rates, errors, sizes, quantiles):
    print("\n3. Resolution of numeric profiles with Q quantile buckets, against the exact CDF (every value a boundary)")
    cols = quantiles + ["exact"]
    print(f"{'n':>6} {'detection':<24} " + " ".join(f"{'Q=' + str(c):>8}" for c in cols))
    for n in sizes:
        for label in RESOLUTION_SHIFTS:
            row = " ".join(f"{_pct(rates[(n, label, q)]):>8}" for q in cols)
            print(f"{n:>6} {label if label != 'no shift' else 'no shift (false alarm)':<24} {row}")
        print(f"{n:>6} {'mean |D - D exact|':<24} " + " ".join(f"{errors[(n, q)][0]:>8.4f}" for q in quantiles))
        print(f"{n:>6} {'mean |W1 - W1 exact| sd':<24} " + " ".join(f"{errors[(n, q)][1]:>8.4f}" for q in quantiles))


JOINT_SHIFTS = ("no shift", "correlation +0.6 -> -0.6", "new cluster 5%, 2 sd off", "new cluster 5%, 1.5 sd off",
                "within l1: +0.5 sd")
CLUSTERS = {"new cluster 5%, 2 sd off": 2.0, "new cluster 5%, 1.5 sd off": 1.5}
JOINT_MOVED = {"correlation +0.6 -> -0.6": {"a", "b"}, "within l1: +0.5 sd": {"group", "w"},
               **{shift: {"a", "b"} for shift in CLUSTERS}}
GROUP = np.array([f"l{i}" for i in range(5)], dtype=object)
GROUP_P = np.array([0.35, 0.25, 0.20, 0.12, 0.08])
GROUP_MEAN = np.array([0.0, 0.3, -0.2, 0.5, -0.4])


def joint_sample(rng: np.random.Generator, n: int, shift: str = "no shift") -> dict[str, np.ndarray]:
    rho = -0.6 if shift == "correlation +0.6 -> -0.6" else 0.6
    u = rng.normal(size=n)
    v = rho * u + np.sqrt(1 - rho * rho) * rng.normal(size=n)
    if shift in CLUSTERS:
        new, at = rng.random(n) < 0.05, CLUSTERS[shift]
        u[new] = rng.normal(at, 0.25, new.sum())
        v[new] = rng.normal(-at, 0.25, new.sum())
    group = rng.choice(5, n, p=GROUP_P)
    w = GROUP_MEAN[group] + rng.normal(size=n)
    if shift == "within l1: +0.5 sd":
        w = w + 0.5 * (group == 1)
    levels20 = np.array([f"v{i:02d}" for i in range(20)], dtype=object)
    return {"a": u, "b": np.exp(v), "zeros": np.where(rng.random(n) < 0.6, 0.0, rng.exponential(1.0, n)),
            "group": GROUP[group], "w": w, "store": levels20[rng.choice(20, n, p=CAT20)]}


def joint_rates(sizes: list[int], reps: int, settings: params.DriftParams, seed: int):
    """rates[(shift, n)] = (joint fires, joint names the moved features first, per-feature rule fires)."""
    rates = {}
    for n in sizes:
        for cell, shift in enumerate(JOINT_SHIFTS):
            _progress(f"joint n={n}: {shift}")
            rng = np.random.default_rng([seed, n, 7, cell])
            fired = named = marginal = 0
            for _ in range(reps):
                ref, cur = joint_sample(rng, n), joint_sample(rng, n, shift)
                profiles = drift.profiles_from_values(ref, settings.quantiles)
                reference = joint.joint_profile(ref, profiles, settings)
                result = joint.compare_joint(reference, reference.summarize(cur), settings)
                fired += result.drifted
                named += result.drifted and set(result.features[:2]) == JOINT_MOVED.get(shift)
                marginal += any(r.drifted for r in drift.compare(profiles, drift.summarize(profiles, cur), settings))
            rates[(shift, n)] = (fired, named, marginal, reps)
    return rates


def joint_cost(settings: params.DriftParams, seed: int, n: int = 5000, reps: int = 50) -> dict[str, float]:
    """Median milliseconds: the reference built from n rows (statistics step); n current rows
    summarised as the sidecar's observer thread receives them (lists of JSON values), by the
    per-feature summaries and by the joint summary (the joint check's added work per row); one
    decision from the summaries, per-feature and joint (the sidecar's work per scrape)."""
    rng = np.random.default_rng([seed, 11])
    ref, cur = joint_sample(rng, n), joint_sample(rng, n)
    served = {k: v.tolist() for k, v in cur.items()}
    profiles = drift.profiles_from_values(ref, settings.quantiles)
    reference = joint.joint_profile(ref, profiles, settings)
    summary = reference.summarize(served)
    summaries = {k: p.summarize(np.asarray(served[k], dtype=object) if p.kind == drift.CATEGORICAL
                                else np.asarray(served[k], float)) for k, p in profiles.items()}

    def median_ms(work) -> float:
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            work()
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))
    return {"joint reference": median_ms(lambda: joint.joint_profile(ref, profiles, settings)),
            "per-feature summaries": median_ms(lambda: {k: p.summarize(
                np.asarray(served[k], dtype=object) if p.kind == drift.CATEGORICAL else np.asarray(served[k], float))
                for k, p in profiles.items()}),
            "joint summary": median_ms(lambda: reference.summarize(served)),
            "per-feature decision": median_ms(lambda: drift.compare(profiles, summaries, settings)),
            "joint decision": median_ms(lambda: joint.compare_joint(reference, summary, settings)),
            "columns": len(reference.columns)}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate k / n."""
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def print_joint(rates, sizes, cost):
    print("\n4. Joint drift: the joint check fires [95% interval]; names = the two features it ranks first are"
          " the moved ones; per-feature = the per-feature rule flags any feature on the same samples")
    print(f"{'shift':<28} {'n':>5} {'joint fires':>24} {'names':>7} {'per-feature':>12}")
    for shift in JOINT_SHIFTS:
        for n in sizes:
            fired, named, marginal, reps = rates[(shift, n)]
            low, high = wilson(fired, reps)
            names_col = "-" if shift == "no shift" else _pct(named / reps)
            print(f"{shift:<28} {n:>5} {_pct(fired / reps):>7} [{_pct(low)}, {_pct(high)}] {names_col:>7} "
                  f"{_pct(marginal / reps):>12}")
    print(f"cost at n = 5,000 rows, {cost['columns']} encoded columns (median ms): " +
          ", ".join(f"{k} {v:.2f}" for k, v in cost.items() if k != "columns"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=400, help="repetitions per grid cell (300-500 for the record)")
    parser.add_argument("--quick", action="store_true", help="100 repetitions per cell, for a quick look")
    parser.add_argument("--sizes", default="50,200,1000,5000")
    parser.add_argument("--tables", default="150,300,600,1500", help="rows of the stationary tables")
    parser.add_argument("--block-reps", type=int, default=1000, help="re-splits per table size")
    parser.add_argument("--resolution-reps", type=int, default=200)
    parser.add_argument("--joint-reps", type=int, default=300, help="repetitions per joint-drift cell")
    parser.add_argument("--joint-sizes", default="200,1000,5000")
    parser.add_argument("--joint-only", action="store_true", help="only section 4 (joint drift)")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.block_reps, args.resolution_reps, args.joint_reps = 100, 300, 60, 100
    sizes = [int(s) for s in args.sizes.split(",")]
    tables = [int(s) for s in args.tables.split(",")]
    joint_sizes = [int(s) for s in args.joint_sizes.split(",")]
    settings = params.load().drift
    start = time.perf_counter()
    if args.joint_only:
        rates = joint_rates(joint_sizes, args.joint_reps, settings, args.seed)
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
        print(f"drift rule: {settings}\n{args.joint_reps} repetitions per joint cell, seed {args.seed}")
        print_joint(rates, joint_sizes, joint_cost(settings, args.seed))
        print(f"\n{time.perf_counter() - start:.0f} s")
        return 0
    grid_rates = grid(sizes, args.reps, settings, args.seed)
    block_rates = false_blocks(tables, args.block_reps, settings, args.seed)
    quantiles = [10, 25, 50, settings.quantiles]
    res_rates, res_errors = resolution([1000, 5000], quantiles, args.resolution_reps, settings, args.seed)
    joint_found = joint_rates(joint_sizes, args.joint_reps, settings, args.seed)
    cost = joint_cost(settings, args.seed)
    print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    print(f"drift rule: {settings}")
    print(f"{args.reps} repetitions per grid cell, {args.block_reps} re-splits per table size, seed {args.seed}")
    print_grid(grid_rates, sizes)
    print_false_blocks(block_rates)
    print_resolution(res_rates, res_errors, [1000, 5000], quantiles)
    print(f"{args.joint_reps} repetitions per joint-drift cell")
    print_joint(joint_found, joint_sizes, cost)
    print(f"\n{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
