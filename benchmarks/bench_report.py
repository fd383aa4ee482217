"""Size and render time of the HTML drift report, against the drift rule's own time on the same data.

    .venv/bin/python benchmarks/bench_report.py [--features 10,100,1000] [--rows 5000] [--browser]
    make bench-report

Data: synthetic tables of numeric (gamma), discrete (1-6) and categorical (40 Zipf levels) columns
in equal parts; the current sample is the reference shifted (numeric x1.2, other level shares).
Per table: the rule's time (`drift.compare` on summaries, with summarizing), the report's time
(charts from the same summaries, HTML), the page's size, and the ratio report / rule. With
--browser, headless Chromium's time to load and lay out the page (Debian's chromium; offline).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel import drift  # noqa: E402
from flywheel.params import DriftParams  # noqa: E402
from flywheel.report import build, render  # noqa: E402


def table(features: int, rows: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    reference, current = {}, {}
    for i in range(features):
        kind = i % 3
        if kind == 0:
            reference[f"num_{i}"] = rng.gamma(2.0, 2.0, rows)
            current[f"num_{i}"] = rng.gamma(2.0, 2.0, rows) * 1.2
        elif kind == 1:
            reference[f"count_{i}"] = rng.integers(1, 7, rows).astype(float)
            current[f"count_{i}"] = rng.integers(1, 8, rows).astype(float)
        else:
            reference[f"cat_{i}"] = np.array([f"level {k}" for k in rng.zipf(1.6, rows) % 40], dtype=object)
            current[f"cat_{i}"] = np.array([f"level {k}" for k in rng.zipf(1.4, rows) % 40], dtype=object)
    return reference, current


def measure(features: int, rows: int, out: Path) -> dict:
    reference, current = table(features, rows, seed=features)
    profiles = drift.profiles_from_values(reference, DriftParams().quantiles)
    started = time.perf_counter()
    results = drift.compare(profiles, drift.summarize(profiles, current), DriftParams())
    rule_s = time.perf_counter() - started
    started = time.perf_counter()
    rule = build.RuleComparison("drift", "Drift", "reference", "current", results, profiles, current, 0.05)
    page = render.write(build.report(f"{features} features", [], (), [rule]), out / f"report-{features}.html")
    report_s = time.perf_counter() - started
    return {"features": features, "rule_s": rule_s, "report_s": report_s, "bytes": page.stat().st_size, "page": page}


def browser_load_s(page: Path) -> float:
    from tests.support.browser import Browser
    with Browser() as browser:
        browser.open(page).close()                  # warm-up: the first page pays for start-up
        started = time.perf_counter()
        opened = browser.open(page)
        opened.evaluate("document.querySelectorAll('svg.chart').length")
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="10,100,1000")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--browser", action="store_true", help="also time Chromium's load (needs chromium)")
    args = parser.parse_args(argv)
    print(f"{'features':>8} {'rule s':>8} {'report s':>9} {'report/rule':>11} {'size kB':>8} {'kB/feature':>10}"
          + (f" {'browser s':>9}" if args.browser else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.features.split(",")):
            m = measure(n, args.rows, Path(tmp))
            line = (f"{n:>8} {m['rule_s']:>8.3f} {m['report_s']:>9.3f} {m['report_s'] / m['rule_s']:>11.2f} "
                    f"{m['bytes'] / 1024:>8.0f} {m['bytes'] / 1024 / n:>10.1f}")
            if args.browser:
                line += f" {browser_load_s(m['page']):>9.2f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
