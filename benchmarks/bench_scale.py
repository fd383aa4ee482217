"""Rows per second and peak memory of the data steps on each path (in memory, streaming, Beam),
and how far the paths' artifacts agree.

    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000,10000000
    make bench-scale [SCALE_SIZES=1000000,10000000] [PATHS=in_memory,streaming,beam]

Data: the default generator's rows (tools/datagen.py), one CSV of N rows made of 1M-row
chunks with different seeds (written once per size into the work directory). Every step runs as
its own process, as a KFP task does: its time is the step alone (imports excluded), its peak
RSS is the process's maximum resident set (imports included); on Beam it is the largest of the
launcher and its DirectRunner worker processes (`scale.workers`), and rows/s per worker
is the rate divided by the workers. Validate includes the schema step and drift against a
2,000-row baseline. Paths are skipped above a row count where they would not fit this machine
(--in-memory-max-rows: the in-memory path peaks at about 1.2 GiB per 1M rows; --beam-max-rows:
the local DirectRunner runs at tens of thousands of rows per second).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import engines  # noqa: E402
from flywheel.params import ROOT, DataParams, IngestParams, ScaleParams, SchemaParams  # noqa: E402

CURATED = ROOT / SchemaParams().curated
CHUNK = 1_000_000
STEPS = ("ingest", "statistics", "validate")
# Training: one epoch at this batch size (the benchmark measures how data reaches the model).
TRAIN_SETTINGS = {"epochs": 1, "batch_size": 1024}
LABEL = "big_tipper"


# --- data ---------------------------------------------------------------------------------
def chunk_file(work: Path, index: int) -> Path:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from tools import datagen
    path = work / f"chunk-{index:03d}.csv"
    if not path.exists():
        frame = datagen.generate_span(DataParams(rows_per_span=CHUNK, seed=7 + index, shifts=()), 1)
        pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def data_file(work: Path, rows: int) -> Path:
    """A CSV of `rows` rows: whole chunks, the last one cut (header kept once)."""
    path = work / f"data-{rows}.csv"
    if path.exists():
        return path
    with open(path, "wb") as out:
        left, index = rows, 0
        while left > 0:
            take = min(left, CHUNK)
            with open(chunk_file(work, index), "rb") as f:
                header = f.readline()
                if index == 0:
                    out.write(header)
                for _, line in zip(range(take), f):
                    out.write(line)
            left, index = left - take, index + 1
    return path


def baseline(work: Path) -> Path:
    """Train statistics of a 2,000-row span: what validate measures drift against."""
    from components import ingest, statistics
    from flywheel import artifacts, names
    from tools import datagen
    stats = work / "baseline_stats"
    if not stats.exists():
        data = work / "baseline.csv"
        datagen.generate_span(DataParams(rows_per_span=2000, shifts=()), 2).to_csv(data, index=False)
        ingest.run(str(data), work / "baseline_examples", IngestParams(label=LABEL))
        statistics.run(work / "baseline_examples", stats, schema_path=CURATED, label=LABEL)
    return artifacts.stats_file(stats, names.TRAIN)


# --- one step in its own process ----------------------------------------------------------
def scale_for(path: str, workers: int) -> ScaleParams:
    return ScaleParams(mode=path, workers=workers)


class TreePeak:
    """The peak resident set of this process (VmHWM) and of every process it starts (Beam's
    workers), sampled from /proc every 20 ms while a step runs."""

    def __init__(self):
        import threading
        self.workers_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _status(pid: int, key: str) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    @staticmethod
    def _descendants(pid: int) -> list[int]:
        found, todo = [], [pid]
        while todo:
            current = todo.pop()
            try:
                for task in os.listdir(f"/proc/{current}/task"):
                    with open(f"/proc/{current}/task/{task}/children") as f:
                        kids = [int(k) for k in f.read().split()]
                    found += kids
                    todo += kids
            except OSError:
                continue
        return found

    def _sample(self):
        while not self._stop.wait(0.02):
            for pid in self._descendants(os.getpid()):
                self.workers_kib = max(self.workers_kib, self._status(pid, "VmRSS:"))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def self_kib(self) -> int:
        return self._status(os.getpid(), "VmHWM:")


def child(step: str, path: str, data: str, out: str, base: str, workers: int) -> dict:
    # What every task imports before its work, not counted in the step's time (`make bench-data`
    # reports that one-time cost).
    import apache_beam  # noqa: F401
    import tensorflow_data_validation  # noqa: F401

    from components import ingest, schema, statistics, validate
    from flywheel.params import DriftParams, ValidateParams
    scale = scale_for(path, workers)
    out_dir = Path(out)
    if step == "train":
        import tensorflow  # noqa: F401
        from components import train
        from flywheel import artifacts
        from flywheel.params import TrainParams
        start = time.perf_counter()
        found = train.run(str(out_dir / "examples"), str(artifacts.schema_file(out_dir / "schema")), LABEL,
                          str(out_dir / "model"), TrainParams(**TRAIN_SETTINGS), engine=path)
        return {"seconds": time.perf_counter() - start, "rows": found.train_rows}
    start = time.perf_counter()
    if step == "ingest":
        found = ingest.run(data, out_dir / "examples", IngestParams(label=LABEL), scale=scale)
    elif step == "statistics":
        found = statistics.run(out_dir / "examples", out_dir / "statistics", schema_path=CURATED, label=LABEL,
                               scale=scale, engine=path)
    else:
        schema.run(out_dir / "statistics", out_dir / "schema", LABEL, CURATED)
        validate.run(out_dir / "statistics", out_dir / "schema", out_dir / "anomalies", baseline_stats=base,
                     params=ValidateParams(block_on_drift=False), examples_dir=out_dir / "examples",
                     drift_params=DriftParams(), label=LABEL, scale=scale)
        found = {}
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": found.get("rows_read", 0)}


def run_step(step: str, path: str, data: Path, out: Path, base: Path, workers: int) -> dict:
    """Run one step in a child process; its time and its (and its workers') peak RSS."""
    command = [sys.executable, __file__, "--child", step, "--path", path, "--data", str(data), "--out", str(out),
               "--baseline", str(base), "--workers", str(workers)]
    with open(out / f"{step}.log", "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        stdout, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{step} on {path} failed: see {out / f'{step}.log'}")
    return json.loads(stdout.strip().splitlines()[-1])


# --- agreement ----------------------------------------------------------------------------
def split_fingerprints(examples: Path) -> dict[str, tuple[int, int]]:
    """(rows, sum of row hashes mod 2^64) per split: equal when the splits hold the same rows,
    whatever their order and sharding."""
    import numpy as np
    from components import splits
    from flywheel import artifacts, names
    out = {}
    for split in names.SPLITS:
        rows, total = 0, 0
        for batch in artifacts.split_batches(examples, split, 500_000):
            hashed = splits.hash_columns([c.to_numpy(zero_copy_only=False) for c in batch.columns])
            total = (total + int(np.add.reduce(hashed, dtype=np.uint64))) % 2**64
            rows += batch.num_rows
        out[split] = (rows, total)
    return out


def agreement_with(reference: Path, other: Path) -> dict:
    from benchmarks import drift_agreement
    from flywheel import artifacts, bundle, names
    numeric, w1, categorical, counts_equal = 0.0, 0.0, 0.0, True
    for split in names.SPLITS:
        found = drift_agreement.gaps(bundle.read_profiles(str(artifacts.profiles_file(reference / "statistics", split))),
                               bundle.read_profiles(str(artifacts.profiles_file(other / "statistics", split))))
        for gap in found.values():
            if gap["kind"] == "numeric":
                numeric, w1 = max(numeric, gap["gap"]), max(w1, gap["w1_sd"])
            else:
                categorical = max(categorical, gap["gap"])
                counts_equal = counts_equal and gap.get("counts_equal", False)
    same_splits = split_fingerprints(reference / "examples") == split_fingerprints(other / "examples")
    return {"same_splits": same_splits, "numeric_cdf_gap": numeric, "numeric_w1_sd": w1,
            "categorical_share_gap": categorical, "categorical_counts_equal": counts_equal}


# --- main ---------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--paths", default=",".join(engines.ENGINES), help="comma-separated paths")
    parser.add_argument("--in-memory-max-rows", type=int, default=2_000_000)
    parser.add_argument("--beam-max-rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes (Beam)")
    parser.add_argument("--train-sizes", default="1000000,5000000",
                        help="comma-separated row counts for training (streaming path; '' for none)")
    parser.add_argument("--work", default="", help="work directory (default: a temporary one)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with TreePeak() as peak:
            result = child(args.child, args.path, args.data, args.out, args.baseline, args.workers)
        # ru_maxrss would carry the parent's peak across fork and exec: VmHWM is this process's own.
        result["peak_kib"], result["workers_peak_kib"] = peak.self_kib, peak.workers_kib
        print(json.dumps(result))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s]
    paths = [p for p in args.paths.split(",") if p]
    limits = {engines.IN_MEMORY: args.in_memory_max_rows, engines.BEAM: args.beam_max_rows}
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.work or None) as tmp:
        work = Path(tmp)
        base = baseline(work)
        print(f"{'rows':>10} {'path':<10} {'step':<11} {'seconds':>8} {'rows/s':>11} {'rows/s/worker':>13} "
              f"{'peak RSS MiB':>13}", flush=True)
        totals, agreements = [], []
        for rows in sizes:
            data = data_file(work, rows)
            bytes_per_row = data.stat().st_size / rows
            outs = {}
            for path in paths:
                if rows > limits.get(path, rows):
                    print(f"{rows:>10} {path:<10} (skipped above {limits[path]:,} rows on this machine)", flush=True)
                    continue
                out = work / f"{path}-{rows}"
                out.mkdir()
                workers = args.workers if path == engines.BEAM else 1
                seconds, peak = 0.0, 0
                for step in STEPS:
                    found = run_step(step, path, data, out, base, args.workers)
                    step_peak = max(found["peak_kib"], found["workers_peak_kib"])
                    seconds += found["seconds"]
                    peak = max(peak, step_peak)
                    rate = rows / found["seconds"]
                    print(f"{rows:>10} {path:<10} {step:<11} {found['seconds']:>8.1f} {rate:>11,.0f} "
                          f"{rate / workers:>13,.0f} {step_peak / 1024:>13.0f}", flush=True)
                totals.append((rows, path, seconds, rows / seconds, rows / seconds / workers, peak))
                outs[path] = out
            for path, out in outs.items():
                if path != engines.IN_MEMORY and engines.IN_MEMORY in outs:
                    agreements.append((rows, path, agreement_with(outs[engines.IN_MEMORY], out)))
            for path, out in outs.items():
                if path != engines.IN_MEMORY:
                    import shutil
                    shutil.rmtree(out / "examples", ignore_errors=True)   # disk: keep what the next size needs
        print("\nend to end (ingest + statistics + validate):")
        print(f"{'rows':>10} {'path':<10} {'seconds':>8} {'rows/s':>11} {'rows/s/worker':>13} {'max peak RSS MiB':>17}")
        for rows, path, seconds, rate, per_worker, peak in totals:
            print(f"{rows:>10} {path:<10} {seconds:>8.1f} {rate:>11,.0f} {per_worker:>13,.0f} {peak / 1024:>17.0f}")
        if agreements:
            print("\nagreement with the in-memory path (exact profiles):")
            for rows, path, found in agreements:
                print(f"{rows:>10} {path:<10} same splits: {found['same_splits']}; numeric profiles: CDF gap "
                      f"{found['numeric_cdf_gap']:.4f}, W1 gap {found['numeric_w1_sd']:.4f} sd; categorical: "
                      f"share gap {found['categorical_share_gap']:.4f}, counts equal: "
                      f"{found['categorical_counts_equal']}")
        train_sizes = [int(s) for s in args.train_sizes.split(",") if s]
        if train_sizes:
            print(f"\ntraining ({TRAIN_SETTINGS['epochs']} epoch, batch {TRAIN_SETTINGS['batch_size']}, tf.data from the "
                  "Parquet shards, adaptation on a 200,000-row sample):")
            print(f"{'rows':>10} {'train rows':>11} {'seconds':>8} {'rows/s':>11} {'peak RSS MiB':>13}")
        for rows in train_sizes:
            data = data_file(work, rows)
            out = work / f"train-{rows}"
            out.mkdir()
            for step in ("ingest", "statistics"):
                run_step(step, engines.STREAMING, data, out, base, 1)
            from components import schema
            schema.run(out / "statistics", out / "schema", LABEL, CURATED)
            found = run_step("train", engines.STREAMING, data, out, base, 1)
            print(f"{rows:>10} {found['rows']:>11,} {found['seconds']:>8.1f} {found['rows'] / found['seconds']:>11,.0f} "
                  f"{max(found['peak_kib'], found['workers_peak_kib']) / 1024:>13.0f}", flush=True)
        scale = ScaleParams()
        print(f"\nauto switches from in_memory to {engines.choose(scale, scale.in_memory_max_bytes + 1)} above "
              f"scale.in_memory_max_bytes = {scale.in_memory_max_bytes / 2**20:.0f} MiB of input: "
              f"{scale.in_memory_max_bytes / bytes_per_row:,.0f} rows of this data ({bytes_per_row:.0f} bytes/row); "
              f"cpu cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
