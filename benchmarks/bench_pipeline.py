"""Per-step wall time of the training pipeline and the share spent outside the step functions.

For each size it generates one span, then in the same run:
1. runs the whole DAG with kfp.local (`python -m pipelines.cli run`, each task its own process,
   as `make run` does) and reads each task's wall time from kfp.local's log lines;
2. calls the same seven step functions in one warm process on the same file (the baseline: the
   work itself, with TensorFlow already imported).
Orchestration overhead = task wall time − step-function time: process start, imports (TF and
TFDV), the KFP executor, artifact hand-over. Usage: python benchmarks/bench_pipeline.py [--rows 10000 100000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time

STEPS = ("ingest", "statistics", "schema", "validate", "train", "evaluate", "push")
LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) - INFO - (Executing task|Task) '?(\w+)-component'?")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def pipeline_task_seconds(data: str, root: str, models: str, curated: str) -> tuple[dict, float, str]:
    command = [sys.executable, "-m", "pipelines.cli", "run", "--data", data, "--label", "big_tipper",
               "--curated-schema", curated, "--model-name", "bench", "--model-repository", models,
               "--pii", "rider_email", "--slice", "payment_type", "--pipeline-root", root]
    started = time.time()
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    total = time.time() - started
    if out.returncode != 0:
        raise SystemExit(f"pipeline failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    begun, seconds = {}, {}
    for line in ANSI.sub("", out.stdout).splitlines():
        match = LOG_LINE.match(line)
        if match:
            stamp = dt.datetime.strptime(match.group(1), "%H:%M:%S.%f")
            if match.group(2) == "Executing task":
                begun[match.group(3)] = stamp
            else:
                seconds[match.group(3)] = (stamp - begun[match.group(3)]).total_seconds()
    return seconds, total, out.stdout


def step_function_seconds(data: str, work: str, models: str, curated: str) -> dict:
    import tensorflow  # noqa: F401  warm: the baseline is the work, not the imports
    import tensorflow_data_validation  # noqa: F401

    from components import evaluate, ingest, push, schema, statistics, train, validate
    from flywheel import names
    from flywheel.params import load

    params = load()
    p = {k: os.path.join(work, k) for k in ("examples", "statistics", "schema", "anomalies", "model", "evaluation")}
    timings = {}

    def timed(step, fn, *args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        timings[step] = time.perf_counter() - started
        return result

    metadata = timed("ingest", ingest.run, data, p["examples"], "big_tipper", ("rider_email",))
    timed("statistics", statistics.run, p["examples"], p["statistics"], os.path.join(work, "stats.html"), curated)
    timed("schema", schema.run, p["statistics"], p["schema"], "big_tipper", curated)
    schema_file = os.path.join(p["schema"], names.SCHEMA_FILE)
    timed("validate", validate.run, p["statistics"], p["schema"], p["anomalies"])
    timed("train", train.run, p["examples"], schema_file, "big_tipper", p["model"], params.train,
          curves_path=os.path.join(work, "curves.html"))
    timed("evaluate", evaluate.run, p["examples"], p["model"], p["evaluation"],
          params.evaluate, models, "bench-warm")
    timed("push", push.run, p["model"], p["evaluation"], p["statistics"], schema_file, models, "bench-warm",
          metadata.get("data_version", ""))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from flywheel import datagen
    from flywheel.params import ROOT, DataParams, IngestParams, load

    curated = str(ROOT / load().validate.curated_schema)
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
            datagen.write_spans(DataParams(rows_per_span=rows, spans=1), work, IngestParams())
            data = os.path.join(work, datagen.span_file(1))
            print(f"[bench] {rows} rows: pipeline with kfp.local ...", flush=True)
            tasks, total, _ = pipeline_task_seconds(data, os.path.join(work, "root"), os.path.join(work, "models"), curated)
            print(f"[bench] {rows} rows: step functions in one warm process ...", flush=True)
            steps = step_function_seconds(data, os.path.join(work, "warm"), os.path.join(work, "models"), curated)
            results.append((rows, tasks, steps, total))

    print("\nPipeline per-step wall time (kfp.local SubprocessRunner) vs the step function alone")
    header = f"{'rows':>8}  {'step':<10} {'task s':>7} {'function s':>10} {'overhead s':>10} {'overhead':>8}"
    print(header)
    print("-" * len(header))
    for rows, tasks, steps, total in results:
        for step in STEPS:
            task, fn = tasks.get(step, float("nan")), steps.get(step, float("nan"))
            print(f"{rows:>8}  {step:<10} {task:>7.1f} {fn:>10.1f} {task - fn:>10.1f} {(task - fn) / task:>8.0%}")
        task_sum, fn_sum = sum(tasks.values()), sum(steps.values())
        print(f"{rows:>8}  {'all tasks':<10} {task_sum:>7.1f} {fn_sum:>10.1f} {task_sum - fn_sum:>10.1f} "
              f"{(task_sum - fn_sum) / task_sum:>8.0%}   (whole command {total:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
