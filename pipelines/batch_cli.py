"""Offline predictions: `make batch DATA=... [MODEL=] [VERSION=]` (python -m pipelines.batch_cli).

Scores a table with a pushed version (the served one by default) and publishes the run under the
model's batch root (flywheel/batch_runs.py), where the sidecar's lookup finds it. Runners:
`inprocess` calls the step function here (fastest: no task start-up), `subprocess` and `docker`
run the compiled DAG with kfp.local (pipelines/batch_pipeline.py), `--host` submits it to
Kubeflow. Ends with a short summary: rows scored and bad, the drifted features, the anomalies,
where the predictions and the report are. Exit status 0 on success, 1 on bad input (the error
paragraph goes to stderr; nothing is written), 2 on a usage error.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import sys
import time
import warnings

from flywheel import batch_runs, names, storage
from flywheel import model_repository as repo
from flywheel import options
from flywheel import params as params_module
from flywheel.errors import DataError
from pipelines import console, local_runners, runner
from pipelines.validate_cli import format_report

RUNNERS = ("inprocess",) + local_runners.RUNNERS


def choose_version(repository: str, model_name: str, version: int) -> int:
    """The version asked for, or the served one; ValueError naming what is missing."""
    versions = repo.versions(repository, model_name) if storage.exists(repo.model_dir(repository, model_name)) else []
    if not versions:
        raise ValueError(f"no pushed version of model '{model_name}' under {repository}; run `make run` first "
                         "(or name the model with MODEL=)")
    if version and version not in versions:
        raise ValueError(f"model '{model_name}' has no version {version} under {repository} (versions: {versions})")
    return version or versions[-1]


def progress_printer(stream=sys.stdout):
    """A progress callback: rows read so far and the rate, on one line of a terminal."""
    started = time.perf_counter()
    if not stream.isatty():
        return lambda rows: None

    def show(rows: int) -> None:
        rate = rows / max(time.perf_counter() - started, 1e-9)
        stream.write(f"\r  scoring: {rows:,} rows read ({rate:,.0f} rows/s)")
        stream.flush()
    return show


def run_inprocess(data: str, params: params_module.Params, version: int, data_rev: str = "",
                  run_id: str = "", trigger: dict | None = None) -> tuple[dict, str]:
    """The step function, here; returns (summary, the published run's directory)."""
    from components import batch_score

    repository, model_name = params.push.model_repository, params.push.model_name
    root = batch_runs.root(repository, model_name, params.batch.output_root)
    name = batch_runs.new_run_name(version)
    run_dir = batch_runs.run_dir(root, name)
    show = progress_printer()
    try:
        summary = batch_score.run(data, repo.version_dir(repository, model_name, version), run_dir, model_name,
                                  version, params.batch, params.drift, data_rev=data_rev, run_id=run_id or name,
                                  trigger=trigger, progress=show)
    finally:
        if sys.stdout.isatty():
            sys.stdout.write("\n")
    batch_runs.publish(root, name, summary)
    return summary, run_dir


def run_kfp_local(arguments: dict, runner_name: str, pipeline_root: str, verbose: bool) -> tuple[dict, str]:
    """The compiled DAG with kfp.local; returns (summary, the published run's directory)."""
    from pipelines.batch_pipeline import PIPELINE_NAME, batch_pipeline

    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    # The component's base image is the project's own, and this environment is what it holds.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom",
                            category=RuntimeWarning)
    pipeline_root = os.path.abspath(pipeline_root)
    os.makedirs(pipeline_root, exist_ok=True)
    arguments = local_runners.init(runner_name, arguments, pipeline_root)
    log_file = runner.log_path(f"batch-{os.path.basename(arguments['data_path'])}")
    before = set(os.listdir(pipeline_root))
    with open(log_file, "a") as log:
        tasks = runner.TaskLog(log, sys.stdout, verbose)
        try:
            with contextlib.redirect_stdout(tasks):
                batch_pipeline(**arguments)
        except RuntimeError as failure:
            cause = runner.failure_cause(tasks.lines.get("batch-score", [])) or str(failure)
            raise DataError(arguments["data_path"], f"the batch pipeline failed: {cause} (log: {log_file})") from None
    created = sorted(d for d in set(os.listdir(pipeline_root)) - before if d.startswith(PIPELINE_NAME))
    outputs = glob.glob(os.path.join(pipeline_root, created[-1], "batch-score-component", "predictions"))
    summary = json.loads(storage.read_bytes(os.path.join(outputs[0], names.BATCH_SUMMARY)))
    latest = batch_runs.read_latest(batch_runs.root(arguments["model_repository"], arguments["model_name"],
                                                    arguments["batch"].get("output_root", "")))
    return summary, batch_runs.run_dir(batch_runs.root(arguments["model_repository"], arguments["model_name"],
                                                       arguments["batch"].get("output_root", "")), latest["run"])


def describe(summary: dict, run_dir: str) -> str:
    """The run in a few lines, then the anomalies table."""
    lines = [f"scored {summary['rows_scored']:,} of {summary['rows_read']:,} rows with {summary['model']} "
             f"version {summary['version']} in {summary['seconds']:.1f}s ({summary['rows_per_s']:,.0f} rows/s); "
             f"{summary['bad_rows']:,} bad rows ({summary['bad_share']:.2%})",
             f"drift against the version's training data: {', '.join(summary['drifted']) or 'none'}"]
    if summary.get("lookup_keys"):
        lines.append(f"lookup index: {summary['lookup_keys']:,} keys ({summary['key_column']}); "
                     f"{summary['duplicate_keys']:,} repeated keys kept their first answer")
    report = os.path.join(run_dir, names.ANOMALY_REPORT)
    if storage.exists(report):
        lines += ["", format_report(json.loads(storage.read_bytes(report)))]
    lines += ["", f"predictions: {storage.join(run_dir, names.BATCH_PREDICTIONS_DIR)}{os.sep}",
              f"bad rows:    {storage.join(run_dir, names.BAD_ROWS_FILE)}",
              f"report:      {storage.join(run_dir, names.REPORT_HTML)} (open in a browser, works offline)",
              f"lineage:     {storage.join(run_dir, names.RUN_RECORD)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel batch", description=__doc__.split("\n")[0])
    parser.add_argument("data", help="CSV or Parquet file, folder of shards, glob, or DVC-tracked path (--data-rev)")
    parser.add_argument("--data-rev", default="", help="git revision of a DVC-tracked path")
    options.add_model(parser)
    parser.add_argument("--version", type=int, default=0, help="version to score with (default: the served one)")
    options.add_sets(parser)
    parser.add_argument("--runner", choices=RUNNERS, default="inprocess")
    parser.add_argument("--pipeline-root", default=runner.DEFAULT_PIPELINE_ROOT)
    parser.add_argument("--host", default="", help="submit to this KFP endpoint instead of running here")
    options.add_params(parser)
    options.add_verbose(parser)
    args = parser.parse_args(argv)
    console.quiet(args.verbose)
    try:
        params = options.load(args)
        repository, model_name = options.model(args, params)
        params = params_module.override(params, {"push.model_repository": repository, "push.model_name": model_name})
        params, run_arguments = options.settings_and_run_arguments(params, options.parse_sets(args.set))
        run_arguments["trigger"]["command"] = f"batch {args.data}"
        if args.host:
            from pipelines import batch_pipeline, remote
            arguments = batch_pipeline.arguments(params, args.data, args.version, data_rev=args.data_rev,
                                                 trigger=run_arguments.get("trigger", {}))
            print(f"submitted run {remote.submit(args.host, arguments, package=remote.BATCH_YAML)} to {args.host}")
            return 0
        if not storage.is_remote(params.push.model_repository):
            params = params_module.override(params, {
                "push.model_repository": storage.absolute(params.push.model_repository)})
        version = choose_version(params.push.model_repository, params.push.model_name, args.version)
        data = storage.absolute(args.data) if os.path.exists(args.data) else args.data
        print(f"== batch scoring {args.data} with {params.push.model_name} version {version} ({args.runner}) ==",
              flush=True)
        if args.runner == "inprocess":
            summary, run_dir = run_inprocess(data, params, version, args.data_rev,
                                             trigger=run_arguments.get("trigger"))
        else:
            from pipelines import batch_pipeline
            arguments = batch_pipeline.arguments(params, data, version, data_rev=args.data_rev,
                                                 trigger=run_arguments.get("trigger", {}))
            summary, run_dir = run_kfp_local(arguments, args.runner, args.pipeline_root, args.verbose)
    except DataError as error:
        print(f"\nFAILED: {error}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(summary, run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
