"""`python -m pipelines.cli` (`flywheel run|compile|submit|schedule|rollback`): the pipeline's commands.

`main` is the job behind `make run`: the pipeline on the first span (version 1 is pushed), then
on a later span (a new model is evaluated against version 1 and pushed only if blessed), then a
summary table. `run` is the same on a user's file.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import sys

from flywheel import bundle, names, storage
from flywheel import model_repository as repo
from flywheel import options
from flywheel import params as params_module
from flywheel.options import parse_sets, settings_and_run_arguments
from pipelines import console, local_runners, runner, summary
from pipelines.training_pipeline import arguments as pipeline_arguments

LAST_RUN_FILE = os.path.join("runs", "last_run.json")
METRICS_FILE = os.path.join("runs", "metrics.json")   # DVC metrics of the last run (dvc.yaml stage `pipeline`)
PLOTS_DIR = os.path.join("runs", "plots")              # DVC plots: roc.csv, training.csv


def local_paths(params: params_module.Params) -> params_module.Params:
    """A local run's repository made absolute, so every task reads the same one."""
    return params_module.override(params, {"push.model_repository": storage.absolute(params.push.model_repository)})


def print_summary(summaries: list[summary.RunSummary], params: params_module.Params) -> None:
    repository, model_name = params.push.model_repository, params.push.model_name
    print(summary.describe(summaries, repo.versions(repository, model_name), repository, model_name,
                           repo.labels(repository, model_name)))


def _write_last_run(summaries: list[summary.RunSummary]) -> None:
    os.makedirs(os.path.dirname(LAST_RUN_FILE), exist_ok=True)
    with open(LAST_RUN_FILE, "w") as f:
        json.dump([dataclasses.asdict(s) for s in summaries], f, indent=2, default=str)


def write_dvc_outputs(last: summary.RunSummary, metrics_file: str = METRICS_FILE, plots_dir: str = PLOTS_DIR) -> None:
    """The last run's metrics and curves in the files `dvc metrics show` and `dvc plots show` read."""
    import csv

    evaluation_dir = last.artifacts.get("evaluate/evaluation")
    evaluation = json.loads(storage.read_bytes(os.path.join(evaluation_dir, names.EVALUATION_FILE))) \
        if evaluation_dir else {}
    os.makedirs(plots_dir, exist_ok=True)
    with open(metrics_file, "w") as f:
        json.dump({**{k: v for k, v in last.metrics.items() if isinstance(v, (int, float))},
                   "slice_gap": evaluation.get("slice_gap"), "blessed": bool(last.blessed),
                   "pushed_version": last.pushed_version}, f, indent=2)
    roc = evaluation.get("roc_curve") or {}
    with open(os.path.join(plots_dir, "roc.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fpr", "tpr", "threshold"])
        writer.writerows(zip(roc.get("fpr", []), roc.get("tpr", []), roc.get("thresholds", [])))
    model_dir = last.artifacts.get("train/model")
    history = bundle.read_metadata(model_dir).get("history", {}) if model_dir else {}
    with open(os.path.join(plots_dir, "training.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *history])
        writer.writerows([i + 1, *values] for i, values in enumerate(zip(*history.values())))


def model_name_for(path: str) -> str:
    """A model name for a user's file: its stem, in the characters TF Serving model names allow."""
    stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0]
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower() or "model"


def cmd_main(args, params) -> int:
    repository, model_name = options.model(args, params)
    params = params_module.override(params, {"push.model_repository": repository, "push.model_name": model_name})
    params, run_arguments = settings_and_run_arguments(params, parse_sets(args.set))
    params = local_paths(params)
    spans = sorted(glob.glob(os.path.join(params.data.output_dir, "span-*.csv")))
    if len(spans) < 2:
        print(f"error: need at least two spans in {params.data.output_dir}, found {len(spans)}; "
              "generate them with `make data` (dvc repro).", file=sys.stderr)
        return 2
    chosen = [spans[0], spans[args.later_span - 1 if args.later_span else 1]]
    summaries, log_file = [], runner.log_path("make-run")
    for i, path in enumerate(chosen, 1):
        print(f"== [{i}/{len(chosen)}] pipeline on {path} ==", flush=True)
        arguments = pipeline_arguments(params, storage.absolute(path),
                                       **{**run_arguments, **({"force_push": True} if args.force else {})})
        summaries.append(runner.run_local(arguments, args.pipeline_root, args.verbose, log_file, args.runner))
        if not summaries[-1].succeeded:
            break
    print_summary(summaries, params)
    _write_last_run(summaries)
    write_dvc_outputs(summaries[-1])
    return 0 if all(s.succeeded for s in summaries) else 1


def production_schema(params: params_module.Params) -> str:
    """The schema the named model's production version was trained with, or "" if none: a new span
    of the same data is validated against it (a changed column is an anomaly, not a new schema)."""
    version = repo.production_version(params.push.model_repository, params.push.model_name)
    if version is None:
        return ""
    path = bundle.path(repo.version_dir(params.push.model_repository, params.push.model_name, version),
                       names.BASELINE_SCHEMA)
    return path if storage.exists(path) and not storage.is_remote(path) else ""


def cmd_run(args, params) -> int:
    """One pipeline run on a user's file (or one span): any CSV/Parquet with a header and a label.
    With MODEL naming a pushed model, the file is a new span for it: validated against its schema,
    drift against its baseline, evaluated against it. Without a file, the make-run job (`cmd_main`)."""
    if not args.data:
        return cmd_main(args, params)
    if not args.label:
        raise ValueError("--data needs --label (the label column)")
    sets = parse_sets(args.set)
    assignments = {"ingest.label": args.label, "ingest.pii_columns": args.pii or [],
                   "evaluate.slice_features": args.slice or [], "evaluate.slice_crosses": [],
                   "push.model_name": args.model_name or model_name_for(args.data)}
    if args.model_repository:
        assignments["push.model_repository"] = args.model_repository
    params = local_paths(params_module.override(params, assignments))
    if "schema.curated" not in sets:  # a user's data: the production model's schema, else infer
        params = params_module.override(params, {"schema.curated": args.curated_schema or production_schema(params)})
    params, run_arguments = settings_and_run_arguments(params, sets)
    if args.data_rev:
        run_arguments["data_rev"] = args.data_rev
    if args.force:
        run_arguments["force_push"] = True
    data = storage.absolute(args.data) if os.path.exists(args.data) else args.data
    print(f"== pipeline on {args.data} (label {params.ingest.label}, model {params.push.model_name}) ==", flush=True)
    result = runner.run_local(pipeline_arguments(params, data, **run_arguments), args.pipeline_root, args.verbose,
                              runner=args.runner)
    print_summary([result], params)
    _write_last_run([result])
    return 0 if result.succeeded else 1


def cmd_compile(args, params) -> int:
    from pipelines import remote

    if args.pipeline == "batch":
        from pipelines.batch_pipeline import batch_pipeline
        output = args.output or remote.BATCH_YAML
        path = remote.compile_pipeline(output, args.image, batch_pipeline, volume=args.volume)
    else:
        path = remote.compile_pipeline(args.output or remote.PIPELINE_YAML, args.image, volume=args.volume)
    print(f"compiled {path} (image {args.image}{f', volume {args.volume}' if args.volume else ''})")
    return 0


def _volume(value: str) -> str:
    """argparse's check of --volume (also run on its default, ""): the message names what is wrong."""
    from pipelines import remote

    if not value:
        return value
    try:
        remote.parse_volume(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _remote_arguments(args, params) -> dict:
    params, run_arguments = settings_and_run_arguments(params, parse_sets(args.set),
                                                       trigger="schedule" if args.command == "schedule" else "manual")
    if args.command == "schedule":
        run_arguments["trigger"]["cron"] = args.cron
    run_arguments["trigger"]["submitted_to"] = args.host
    params = params_module.override(params, {"push.model_repository": args.model_repository,
                                             "push.model_name": args.model_name or params.push.model_name})
    return pipeline_arguments(params, args.data, **run_arguments)


def cmd_submit(args, params) -> int:
    from pipelines import remote

    arguments = _remote_arguments(args, params)
    run_id = remote.submit(args.host, arguments, args.experiment, package=args.package,
                           service_account=args.service_account)
    print(f"submitted run {run_id} to {args.host}")
    if not args.wait:
        return 0
    result = remote.wait_and_summarize(args.host, run_id, arguments)
    model_name = arguments["push"]["model_name"]
    print(summary.describe([result], repo.versions(args.model_repository, model_name), args.model_repository,
                           model_name, repo.labels(args.model_repository, model_name)))
    return 0 if result.succeeded else 1


def cmd_schedule(args, params) -> int:
    from pipelines import remote

    job_id = remote.schedule(args.host, args.cron, _remote_arguments(args, params), args.experiment,
                             package=args.package, service_account=args.service_account)
    print(f"created recurring run {job_id} ({args.cron}) on {args.host}")
    return 0


def cmd_rollback(args, params) -> int:
    from components.push import rollback

    result = rollback(*options.model(args, params), args.to)
    print(result.reason, f"({result.path})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flywheel", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, **kwargs):
        """A subcommand; each reads its settings from --params."""
        sp = sub.add_parser(name, **kwargs)
        options.add_params(sp)
        return sp

    def local_run(name, **kwargs):
        """A command that runs the pipeline here, with the flags every local run takes."""
        sp = command(name, **kwargs)
        sp.add_argument("--pipeline-root", default=runner.DEFAULT_PIPELINE_ROOT)
        sp.add_argument("--later-span", type=int, default=0,
                        help="the make-run job: 1-based span number of the second run (default 2)")
        sp.add_argument("--force", action="store_true", help="push even when a version was trained on the same data")
        options.add_sets(sp)
        options.add_verbose(sp, help="show every task's full output on the console")
        sp.add_argument("--runner", choices=local_runners.RUNNERS, default="subprocess",
                        help="where each task runs: a subprocess of this environment, or the component image")
        return sp

    m = local_run("main", help="the make-run job: first span, then a later one, then a summary")
    options.add_model(m)
    m.set_defaults(func=cmd_main)

    r = local_run("run", help="run the pipeline locally on one file (without --data: the make-run job)")
    r.add_argument("--data", default="", help="CSV or Parquet file, or a DVC-tracked path (with --data-rev)")
    r.add_argument("--label", default="", help="label column (numeric or string); required with --data")
    r.add_argument("--data-rev", default="", help="git revision of a DVC-tracked path")
    options.add_model(r, name_help="default: the file's stem; name a pushed model to retrain it")
    r.add_argument("--curated-schema", default="", help="schema.pbtxt to import (default: the model's, else inferred)")
    r.add_argument("--pii", nargs="*", help="columns to drop before anything is written")
    r.add_argument("--slice", action="append", help="feature to slice evaluation metrics and fairness by (repeatable)")
    r.set_defaults(func=cmd_run)

    c = command("compile", help="compile the pipeline to KFP YAML")
    c.add_argument("--output", default="", help="default: pipelines/<pipeline>_pipeline.yaml")
    c.add_argument("--pipeline", choices=("training", "batch"), default="training")
    c.add_argument("--image", default=names.COMPONENT_IMAGE, help="component image (name:tag or @digest)")
    c.add_argument("--volume", default="", type=_volume, metavar="CLAIM:PATH",
                   help="mount this PersistentVolumeClaim at PATH in every step (data and model repository on "
                        "a shared volume)")
    c.set_defaults(func=cmd_compile)

    for name, func in (("submit", cmd_submit), ("schedule", cmd_schedule)):
        s = command(name, help=f"{name} the compiled pipeline on a KFP endpoint")
        s.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
        s.add_argument("--data", default="data/spans/span-001.csv", help="data path as the cluster sees it")
        options.add_model(s, required=True, repository_help="gs://…, s3://… or a mounted path in the cluster")
        s.add_argument("--experiment", default="flywheel")
        s.add_argument("--service-account", default=names.PIPELINE_SERVICE_ACCOUNT,
                       help="the runs' Kubernetes service account (manifests/base/pipeline-rbac.yaml)")
        s.add_argument("--package", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "training_pipeline.yaml"))
        options.add_sets(s)
        if name == "schedule":
            s.add_argument("--cron", default="0 0 3 * * *", help="KFP cron (six fields, seconds first)")
        else:
            s.add_argument("--wait", action="store_true", help="wait for the run and print its summary")
        s.set_defaults(func=func)

    b = command("rollback", help="make an earlier version production again (moves the production label)")
    b.add_argument("--to", type=int, required=True, help="version to serve again")
    options.add_model(b)
    b.set_defaults(func=cmd_rollback)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console.quiet(getattr(args, "verbose", False))
    try:
        params = options.load(args)
        return args.func(args, params)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
