"""Cost of the fairness assessment (flywheel/fairness.py) by test-split size, and what the row cap
of the bootstrap buys.

    .venv/bin/python benchmarks/bench_fairness.py --sizes 500,10000,100000,1000000
    make bench-fairness [FAIRNESS_SIZES=500,10000]

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

from flywheel import evaluation_metrics as em
from flywheel import fairness, names, params

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


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,10000,100000,1000000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",") if s]
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


if __name__ == "__main__":
    main()
