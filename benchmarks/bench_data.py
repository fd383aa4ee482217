"""Rows per second and peak memory of the data steps (ingest, statistics, validate).

    .venv/bin/python benchmarks/bench_data.py --sizes 10000,100000,1000000
    make bench-data [SIZES=10000,100000]

Data: the default generator (one span of N rows, CSV). Each step runs once per size, in this
process, after a warm-up on a small span (so TensorFlow/TFDV import and first-call costs are not
counted). Peak memory is the process's peak resident set size sampled every 5 ms while the
step runs, and the increase over the resident size just before it.
"""
import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from components import ingest, schema, statistics, validate  # noqa: E402
from flywheel import artifacts, names  # noqa: E402
from flywheel.params import ROOT, DataParams, IngestParams, SchemaParams, ValidateParams  # noqa: E402
from tools import datagen  # noqa: E402

CURATED = ROOT / SchemaParams().curated
INGEST = IngestParams(label=datagen.LABEL)
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def timed(fn):
    with PeakRss() as mem:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return seconds, mem.peak, mem.peak - mem.start


def bench(rows: int, work: Path) -> list[tuple]:
    data = work / f"span-{rows}.csv"
    datagen.generate_span(DataParams(rows_per_span=rows), 1).to_csv(data, index=False)
    baseline = work / "baseline"
    out = work / str(rows)
    steps = [
        ("ingest", lambda: ingest.run(str(data), out / "examples", INGEST)),
        ("statistics", lambda: statistics.run(out / "examples", out / "statistics", out / names.STATS_HTML,
                                              schema_path=CURATED)),
        ("validate", lambda: (schema.run(out / "statistics", out / "schema", datagen.LABEL, CURATED),
                              validate.run(out / "statistics", out / "schema", out / "anomalies",
                                           baseline_stats=str(artifacts.stats_file(baseline, names.TRAIN)),
                                           params=ValidateParams(), examples_dir=out / "examples",
                                           label=datagen.LABEL))),
    ]
    results = []
    for name, fn in steps:
        seconds, peak, delta = timed(fn)
        results.append((rows, name, seconds, rows / seconds, peak, delta))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work = Path(tmp)
        # Warm-up, and the baseline statistics validate compares against (drift).
        warm = work / "warm.csv"
        datagen.generate_span(DataParams(rows_per_span=2000), 1).to_csv(warm, index=False)
        ingest.run(str(warm), work / "warm_examples", INGEST)
        start = time.perf_counter()
        statistics.run(work / "warm_examples", work / "baseline", work / "warm.html", schema_path=CURATED)
        print(f"one-time cost of the first statistics call in a process (TFDV/TensorFlow start-up; every "
              f"KFP task pays it once): {time.perf_counter() - start:.1f} s, not counted below")
        print(f"{'rows':>9} {'step':<11} {'seconds':>8} {'rows/s':>11} {'peak RSS MiB':>13} {'+MiB':>7}")
        for rows in sizes:
            for r, name, seconds, rate, peak, delta in bench(rows, work):
                print(f"{r:>9} {name:<11} {seconds:>8.2f} {rate:>11,.0f} {peak / 2**20:>13.0f} {delta / 2**20:>7.0f}",
                      flush=True)
    print(f"cpu cores: {os.cpu_count()}; validate includes loading the schema (curated) and drift against a "
          "2000-row baseline; statistics includes the Facets HTML.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
