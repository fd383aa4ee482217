"""The fairness gate's error rates, and the cost of the assessment (flywheel/evaluation/fairness.py) by
test-split size with what the row cap of the bootstrap buys.

    .venv/bin/python benchmarks/bench_fairness.py --sizes 500,10000,100000,1000000 --seeds 50
    make bench-fairness [FAIRNESS_SIZES=500,10000] [FAIRNESS_SEEDS=50]

Error rates: a model fair by construction (groups with their own base rates, scores that depend
on the label alone, so every group's AUC is the same) over many seeds, for several numbers of slices of one feature plus a quantile-binned feature and the
crossed pair of both (as the default data is sliced), at two test-split sizes; the share of runs
the gate refuses is its false-alarm rate (the target: at most 1 - confidence, 5%). The same runs
with one group's scores replaced by noise give its power. Beside it, in the same runs, the rule
the gate replaced (refuse when two slices' 95% intervals do not overlap and their gap exceeds
max_slice_gap, no correction) for comparison.

Data: taxi-like test rows (payment type, company, miles; labels from a logistic function, scores
with noise) sliced as params.yaml's `evaluate` section slices the default data (three features
and one crossed pair). For each size: seconds of `fairness.assess` with the default settings,
the same with the row cap lifted (sizes up to 100,000 rows: without the cap the cost grows with
the rows), the ratio of both to the overall metrics computed in the same run (the baseline), and
the widest relative difference of interval widths between capped and uncapped runs.
"""
import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from flywheel import names, params
from flywheel.evaluation import evaluation_metrics as em
from flywheel.evaluation import fairness

UNCAPPED_UP_TO = 100_000


def rows(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "payment_type": rng.choice(["Credit Card", "Cash", "Mobile", "Prcard", "Unknown"], n,
                                   p=[0.45, 0.33, 0.12, 0.05, 0.05]),
        "company": rng.choice([f"company {i}" for i in range(10)], n),
        "trip_miles": rng.gamma(2.0, 1.5, n)})
    logit = 1.1 * (frame["payment_type"] == "Credit Card") - 2.1 * (frame["payment_type"] == "Cash") \
        - 0.3 * frame["trip_miles"] + 0.5
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    scores = 1 / (1 + np.exp(-(logit + rng.normal(0, 1, n))))
    return frame, labels, {names.OUTPUT_SCORE: scores.to_numpy()}


def fair_or_not(n: int, groups: int, seed: int, unfair: bool) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Groups of different sizes and base rates (20% to 60% positives, as payment types differ in
    tipping), scores that depend on the label alone (AUC about 0.8 within every group), unless
    `unfair`: then the most frequent group's scores are noise (AUC 0.5 there)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(groups, 5.0))
    codes = rng.choice(groups, n, p=weights)
    group = np.asarray([f"g{i}" for i in range(groups)])[codes]
    labels = (rng.random(n) < rng.uniform(0.2, 0.6, groups)[codes]).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * labels)))
    if unfair:
        hit = codes == int(np.argmax(weights))
        scores[hit] = rng.random(hit.sum())
    frame = pd.DataFrame({"group": group, "miles": rng.gamma(2.0, 1.5, n)})
    return frame, labels, {names.OUTPUT_SCORE: scores}


def old_rule_refuses(report: fairness.FairnessReport, allowed: float) -> bool:
    """The replaced rule: two slices of a grouping with intervals apart and a gap above `allowed`."""
    judged = [s for s in report.slices if s.status == fairness.OK]
    return any(a.grouping == b.grouping and a.high < b.low and b.value - a.value > allowed
               for a in judged for b in judged)


def error_rates(settings: params.EvaluateParams, seeds: int) -> None:
    config = dataclasses.replace(settings, slice_features=("group", "miles"), slice_crosses=("group:miles",))
    print(f"\nfalse alarms (fair by construction) and power (one group's scores noise), {seeds} seeds each; "
          f"gate: Holm at {1 - config.confidence:.0%} over {', '.join(config.slice_gates)}, floor and "
          f"production; allowed auc gap {config.max_slice_gap}")
    header = f"{'rows':>6}  {'groups':>6}  {'comparisons':>11}  {'false alarms':>12}  {'old rule':>8}  " \
             f"{'power':>6}  {'old rule':>8}"
    print(header)
    print("-" * len(header))
    alarms_all, runs_all = 0, 0
    for n in (600, 2000):
        for groups in (2, 5, 10, 20):
            counts = {"gate": 0, "old": 0, "power": 0, "old power": 0}
            family = []
            for seed in range(seeds):
                frame, labels, outputs = fair_or_not(n, groups, seed, unfair=False)
                fair = fairness.assess(frame, names.BINARY, labels, outputs, config)
                frame, labels, outputs = fair_or_not(n, groups, seed, unfair=True)
                unfair = fairness.assess(frame, names.BINARY, labels, outputs, config)
                family.append(sum(c.gates for c in fair.comparisons))
                counts["gate"] += not fair.passed
                counts["old"] += old_rule_refuses(fair, config.max_slice_gap)
                counts["power"] += not unfair.passed
                counts["old power"] += old_rule_refuses(unfair, config.max_slice_gap)
            alarms_all, runs_all = alarms_all + counts["gate"], runs_all + seeds
            print(f"{n:>6}  {groups:>6}  {np.mean(family):>11.0f}  {counts['gate'] / seeds:>12.1%}  "
                  f"{counts['old'] / seeds:>8.1%}  {counts['power'] / seeds:>6.1%}  {counts['old power'] / seeds:>8.1%}",
                  flush=True)
    print(f"false-alarm rate over all {runs_all} fair runs: {alarms_all / runs_all:.1%} "
          f"(target at most {1 - config.confidence:.0%})")


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,10000,100000,1000000")
    parser.add_argument("--seeds", type=int, default=50, help="runs per row of the error-rate table (0: skip it)")
    arguments = parser.parse_args()
    sizes = [int(s) for s in arguments.sizes.split(",") if s]
    settings = params.load().evaluate
    uncapped = dataclasses.replace(settings, bootstrap_max_rows=10 ** 9)
    print(f"fairness.assess: {len(settings.slice_features)} features + {len(settings.slice_crosses)} crossed pair(s), "
          f"{settings.bootstrap_resamples} resamples, row cap {settings.bootstrap_max_rows}")
    header = f"{'rows':>9}  {'slices':>6}  {'metrics s':>9}  {'assess s':>8}  {'x metrics':>9}  " \
             f"{'uncapped s':>10}  {'x metrics':>9}  {'width diff':>10}"
    print(header)
    print("-" * len(header))
    for n in sizes:
        frame, labels, outputs = rows(n)
        _, base = timed(em.task_metrics, names.BINARY, labels, outputs)
        report, capped_s = timed(fairness.assess, frame, names.BINARY, labels, outputs, settings)
        line = f"{n:>9}  {len(report.slices):>6}  {base:>9.3f}  {capped_s:>8.2f}  {capped_s / base:>9.0f}"
        if n <= UNCAPPED_UP_TO:
            full, full_s = timed(fairness.assess, frame, names.BINARY, labels, outputs, uncapped)
            widths = [abs((a.high - a.low) / (b.high - b.low) - 1) for a, b in zip(report.slices, full.slices)
                      if a.low is not None and b.low is not None]
            line += f"  {full_s:>10.2f}  {full_s / base:>9.0f}  {max(widths, default=0):>9.0%}"
        print(line, flush=True)
    if arguments.seeds:
        error_rates(settings, arguments.seeds)


if __name__ == "__main__":
    main()
