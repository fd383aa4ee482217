"""`python -m pipelines.cli` (also the `flywheel` script): run, compile, submit, schedule, rollback.

`main` is the job behind `make run`: the pipeline on the first span (version 1 is pushed), then
on a later span (a new model is evaluated against version 1 and pushed only if blessed), then a
summary table.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

from flywheel import model_repository as repo
from flywheel import params as params_module
from pipelines import local_runners, runner


def _fmt_metrics(metrics: dict) -> str:
    keys = [k for k in ("auc", "accuracy", "log_loss", "rmse", "mae") if k in metrics]
    return " ".join(f"{k}={metrics[k]:.3f}" for k in keys) or "-"


def summary_table(summaries: list[runner.RunSummary]) -> str:
    header = ["data", "data version", "anomalies", "metrics (test)", "blessed", "pushed", "time"]
    rows = []
    for s in summaries:
        rows.append([
            os.path.basename(s.data_path), (s.data_version or "-")[:16],
            f"{s.anomalies_blocking} blocking, {s.anomalies_other} other",
            _fmt_metrics(s.metrics), "-" if s.blessed is None else ("yes" if s.blessed else "no"),
            f"v{s.pushed_version}" if s.pushed else ("no" if s.pushed is not None else "-"),
            f"{s.seconds:.0f}s"])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def print_summary(summaries: list[runner.RunSummary], repository: str, model_name: str) -> None:
    print("\n== Flywheel run summary ==")
    print(summary_table(summaries))
    for s in summaries:
        reason = s.error or s.push_reason or s.blessing_reason
        print(f"- {os.path.basename(s.data_path)}: {'ok' if s.succeeded else 'FAILED'}: {reason}")
    versions = repo.versions(repository, model_name)
    print(f"model repository: {os.path.join(repository, model_name)}  versions: {versions or 'none'}"
          f"  served (latest): {('v' + str(versions[-1])) if versions else 'none'}")
    if summaries:
        print(f"artifacts: {os.path.dirname(summaries[-1].run_dir)}  (last run: {os.path.basename(summaries[-1].run_dir)})")
        curves = glob.glob(os.path.join(summaries[-1].run_dir, "train-component", "curves*.png"))
        card = os.path.join(summaries[-1].run_dir, "evaluate-component", "model_card")
        if curves:
            print(f"training curves: {curves[0]}")
        if os.path.exists(card):
            print(f"model card: {card}")


def _write_summary_json(summaries: list[runner.RunSummary], path: str) -> None:
    import dataclasses

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump([dataclasses.asdict(s) for s in summaries], f, indent=2, default=str)


METRICS_FILE = os.path.join("runs", "metrics.json")   # DVC metrics of the last run (dvc.yaml stage `pipeline`)
PLOTS_DIR = os.path.join("runs", "plots")              # DVC plots: roc.csv, training.csv


def write_dvc_outputs(summary: runner.RunSummary, metrics_file: str = METRICS_FILE, plots_dir: str = PLOTS_DIR) -> None:
    """The last run's metrics and curves in the files `dvc metrics show` and `dvc plots show` read."""
    import csv

    evaluation = runner.read_json(os.path.join(summary.run_dir, "evaluate-component", "evaluation", "metrics.json")) or {}
    os.makedirs(plots_dir, exist_ok=True)
    with open(metrics_file, "w") as f:
        json.dump({**{k: v for k, v in summary.metrics.items() if isinstance(v, (int, float))},
                   "slice_gap": evaluation.get("slice_gap"), "blessed": bool(summary.blessed),
                   "pushed_version": summary.pushed_version}, f, indent=2)
    roc = evaluation.get("roc_curve") or {}
    with open(os.path.join(plots_dir, "roc.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fpr", "tpr", "threshold"])
        writer.writerows(zip(roc.get("fpr", []), roc.get("tpr", []), roc.get("thresholds", [])))
    model_meta = runner.read_json(os.path.join(summary.run_dir, "train-component", "model", "assets.extra",
                                                "flywheel.json")) or {}
    history = model_meta.get("history", {})
    with open(os.path.join(plots_dir, "training.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *history])
        writer.writerows([i + 1, *values] for i, values in enumerate(zip(*history.values())))


def model_name_for(path: str) -> str:
    """A model name for a user's file: its stem, in the characters TF Serving model names allow."""
    stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0]
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower() or "model"


def cmd_main(args, params) -> int:
    spans = sorted(glob.glob(os.path.join(params.data.output_dir, "span-*.csv")))
    if len(spans) < 2:
        print(f"error: need at least two spans in {params.data.output_dir}, found {len(spans)}; "
              "generate them with `make data` (dvc repro).", file=sys.stderr)
        return 2
    chosen = [spans[0], spans[args.later_span - 1 if args.later_span else 1]]
    summaries = []
    for i, path in enumerate(chosen, 1):
        print(f"\n== [{i}/{len(chosen)}] pipeline on {path} ==", flush=True)
        summary = runner.run_local(runner.arguments_from_params(params, path, force_push=args.force),
                                   args.pipeline_root, args.runner)
        summaries.append(summary)
        if not summary.succeeded:
            break
    print_summary(summaries, params.push.model_repository, params.push.model_name)
    _write_summary_json(summaries, os.path.join("runs", "last_run.json"))
    write_dvc_outputs(summaries[-1])
    return 0 if all(s.succeeded for s in summaries) else 1


def cmd_run(args, params) -> int:
    """One pipeline run on a user's file (or one span): any CSV/Parquet with a header and a label."""
    model_name = args.model_name or (params.push.model_name if args.curated_schema else model_name_for(args.data))
    overrides = {"label": args.label, "model_name": model_name, "curated_schema": args.curated_schema,
                 "model_repository": args.model_repository or params.push.model_repository,
                 "pii_columns": args.pii or [], "slice_feature": args.slice or "", "force_push": args.force}
    arguments = runner.arguments_from_params(params, os.path.abspath(args.data) if os.path.exists(args.data)
                                             else args.data, **overrides)
    if args.data_rev:
        arguments["data_rev"] = args.data_rev
    print(f"== pipeline on {args.data} (label {args.label}, model {model_name}) ==", flush=True)
    summary = runner.run_local(arguments, args.pipeline_root, args.runner)
    print_summary([summary], overrides["model_repository"], model_name)
    _write_summary_json([summary], os.path.join("runs", "last_run.json"))
    return 0 if summary.succeeded else 1


def cmd_compile(args, params) -> int:
    path = runner.compile_pipeline(args.output, args.image)
    print(f"compiled {path} (image {args.image})")
    return 0


def parse_sets(pairs: list[str] | None) -> dict:
    """`--set key=value` pipeline arguments; a value is read as JSON when it parses (numbers,
    lists, objects, true/false), else as a string: --set train_accelerator_limit=1
    --set 'train_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}'."""
    parsed = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value, got {pair!r}")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def cmd_submit(args, params) -> int:
    arguments = runner.arguments_from_params(params, args.data, model_repository=args.model_repository,
                                             **parse_sets(args.set))
    run_id = runner.submit(args.host, arguments, args.experiment, package=args.package)
    print(f"submitted run {run_id} to {args.host}")
    return 0


def cmd_schedule(args, params) -> int:
    arguments = runner.arguments_from_params(params, args.data, model_repository=args.model_repository,
                                             **parse_sets(args.set))
    job_id = runner.schedule(args.host, args.cron, arguments, args.experiment, package=args.package)
    print(f"created recurring run {job_id} ({args.cron}) on {args.host}")
    return 0


def cmd_rollback(args, params) -> int:
    from components.push import rollback

    result = rollback(args.model_repository or params.push.model_repository,
                      args.model_name or params.push.model_name, args.to)
    print(result.reason, f"({result.path})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flywheel", description=__doc__.split("\n")[0])
    p.add_argument("--params", default=str(params_module.PARAMS_FILE), help="params.yaml to read")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("main", help="the make-run job: first span, then a later one, then a summary")
    m.add_argument("--later-span", type=int, default=0, help="1-based span number of the second run (default 2)")
    m.add_argument("--pipeline-root", default=runner.DEFAULT_PIPELINE_ROOT)
    m.add_argument("--force", action="store_true", help="push even when a version was trained on the same data")
    m.add_argument("--runner", choices=local_runners.RUNNERS, default="subprocess",
                   help="where each task runs: a subprocess of this environment, or the component image")
    m.set_defaults(func=cmd_main)

    r = sub.add_parser("run", help="run the pipeline locally on one file")
    r.add_argument("--data", required=True, help="CSV or Parquet file, or a DVC-tracked path (with --data-rev)")
    r.add_argument("--label", required=True, help="label column (numeric or string)")
    r.add_argument("--data-rev", default="", help="git revision of a DVC-tracked path")
    r.add_argument("--model-name", default="", help="default: the file's stem")
    r.add_argument("--model-repository", default="", help="default: push.model_repository in params.yaml")
    r.add_argument("--curated-schema", default="", help="schema.pbtxt to import instead of inferring one")
    r.add_argument("--pii", nargs="*", help="columns to drop before anything is written")
    r.add_argument("--slice", default="", help="feature to slice evaluation metrics by")
    r.add_argument("--pipeline-root", default=runner.DEFAULT_PIPELINE_ROOT)
    r.add_argument("--force", action="store_true")
    r.add_argument("--runner", choices=local_runners.RUNNERS, default="subprocess",
                   help="where each task runs: a subprocess of this environment, or the component image")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("compile", help="compile the pipeline to KFP YAML")
    c.add_argument("--output", default=runner.PIPELINE_YAML)
    c.add_argument("--image", default=runner.names.COMPONENT_IMAGE, help="component image (name:tag or @digest)")
    c.set_defaults(func=cmd_compile)

    for name, func, extra in (("submit", cmd_submit, ()), ("schedule", cmd_schedule, ("cron",))):
        s = sub.add_parser(name, help=f"{name} the compiled pipeline on a KFP endpoint")
        s.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
        s.add_argument("--data", default="data/spans/span-001.csv", help="data path as the cluster sees it")
        s.add_argument("--model-repository", required=True, help="gs://…, s3://… or a mounted path in the cluster")
        s.add_argument("--experiment", default="flywheel")
        s.add_argument("--package", default=runner.PIPELINE_YAML)
        s.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any pipeline parameter, e.g. train_accelerator_type=nvidia.com/gpu")
        if "cron" in extra:
            s.add_argument("--cron", default="0 0 3 * * *", help="KFP cron (six fields, seconds first)")
        s.set_defaults(func=func)

    b = sub.add_parser("rollback", help="make an earlier version the served one")
    b.add_argument("--to", type=int, required=True, help="version to serve again")
    b.add_argument("--model-repository", default="")
    b.add_argument("--model-name", default="")
    b.set_defaults(func=cmd_rollback)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        params = params_module.load(args.params)
        return args.func(args, params)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
