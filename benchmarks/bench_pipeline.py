"""Per-step wall time of the training pipeline and the share spent outside the step functions.

For each size it generates one span, then in the same run:
1. runs the whole DAG with kfp.local (pipelines/runner.py, each task its own process, as
   `make run` does) and takes each task's wall time from the run summary;
2. runs the same step functions in one warm process on the same file (pipelines/chain.py: the
   baseline, the work itself with TensorFlow already imported).
Orchestration overhead = task wall time - step-function time: process start, imports (TF and
TFDV), the KFP executor, artifact hand-over. Usage: python benchmarks/bench_pipeline.py [--rows 10000 100000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from flywheel import params
from flywheel.params import DataParams, IngestParams
from tools import datagen

STEPS = ("ingest", "resolve", "statistics", "schema", "validate", "train", "evaluate", "push")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  warm: the baseline is the work, not the imports
    import tensorflow_data_validation  # noqa: F401

    from pipelines import chain, runner
    from pipelines.training_pipeline import arguments

    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
            datagen.write_spans(DataParams(rows_per_span=rows, spans=1), work, IngestParams())
            data = os.path.join(work, datagen.span_file(1))
            settings = params.override(params.load(), {"push.model_repository": os.path.join(work, "models")})
            print(f"[bench] {rows} rows: pipeline with kfp.local ...", flush=True)
            run = runner.run_local(arguments(settings, data), os.path.join(work, "root"),
                                   log_file=os.path.join(work, "run.log"))
            if not run.succeeded:
                raise SystemExit(f"pipeline failed at {run.failed_step}: {run.error}")
            print(f"[bench] {rows} rows: step functions in one warm process ...", flush=True)
            warm = params.override(settings, {"push.model_repository": os.path.join(work, "warm-models")})
            steps = chain.run(data, os.path.join(work, "warm"), warm).seconds
            results.append((rows, run.step_seconds, steps, run.seconds))

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
              f"{(task_sum - fn_sum) / task_sum:>8.0%}   (whole run {total:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
