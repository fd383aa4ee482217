"""Accept a reviewed change into the curated schema.

    python -m pipelines.schema_update DATA --label COLUMN [--previous OLD.csv] [--schema S.pbtxt] [--accept f1,f2|all]
    make schema-update DATA=f.csv [LABEL=col] [PREVIOUS=old.csv] [SCHEMA=s.pbtxt] [ACCEPT=f1,f2|all]

Validates DATA against the curated schema (params.yaml `schema.curated` unless --schema), proposes
the schema changes that would accept its schema anomalies, and prints them (feature, change, why).
With --accept it writes the accepted ones into the schema, raises its version and appends them to
the changelog beside it (flywheel/schema_changes.py). `all` accepts every change that cannot hide
a data error; a type change or a change to the label's values is applied only when its feature is
named. Exit status: 0 when nothing is left to accept, 1 when proposals remain, 2 on bad input.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flywheel import artifacts, bundle, names, schema_changes, schema_view
from flywheel import options
from flywheel import params as params_mod
from flywheel.errors import DataError
from pipelines import chain, console


def review(data: str, label: str, schema_path: Path, out: Path, previous: str = "",
           params_file: str | Path = params_mod.PARAMS_FILE) -> tuple[list[schema_changes.Change], chain.ChainRun]:
    """Validate `data` against the schema; the changes that would accept its schema anomalies."""
    settings = params_mod.override(params_mod.load(params_file), {"ingest.label": label})
    baseline = ""
    if previous:
        before = chain.run(previous, out / "previous", settings, until="statistics", curated_schema=str(schema_path))
        baseline = str(artifacts.stats_file(before.statistics, names.TRAIN))
    run = chain.run(data, out / "current", settings, until="validate", curated_schema=str(schema_path),
                    baseline_stats=baseline, record_block=True)
    train_stats = bundle.read_stats(str(artifacts.stats_file(run.statistics, names.TRAIN)))
    return schema_changes.propose(schema_view.load(schema_path), train_stats, run.results["validate"], label), run


def print_changes(changes: list[schema_changes.Change], accepted: list[schema_changes.Change]) -> None:
    if not changes:
        print("No schema change proposed: the data conforms to the schema.")
        return
    print(f"{'feature':<24} {'change':<10} {'accepted':<8}  what")
    for c in changes:
        mark = "yes" if c in accepted else ("name it" if c.risky else "no")
        print(f"{c.feature[:24]:<24} {c.action:<10} {mark:<8}  {c.summary()}")
        print(f"{'':<45}why: {c.why[:300]}")
        if c.risky:
            print(f"{'':<45}could hide a data error: {c.risk}; applied only with ACCEPT={c.feature}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel schema-update", description=__doc__.split("\n")[0])
    parser.add_argument("data", help="CSV or Parquet file with the new data")
    parser.add_argument("--label", default="", help="label column (default: params.yaml ingest.label)")
    parser.add_argument("--previous", default="", help="an earlier file: drift is shown against it")
    parser.add_argument("--schema", default="", help="the curated schema to update (default: params.yaml schema.curated)")
    parser.add_argument("--accept", default="", help="comma-separated features to accept, or 'all'")
    parser.add_argument("--out", default="", help="where the validation artifacts go (default runs/schema-update/...)")
    options.add_params(parser)
    args = parser.parse_args(argv)
    console.quiet()
    settings = options.load(args)
    label = args.label or settings.ingest.label
    try:
        schema_path = schema_view.resolve_curated(args.schema or settings.schema.curated)
        if schema_path is None:
            raise DataError("schema.curated", "no curated schema to update: give SCHEMA=path/to/schema.pbtxt")
        out = Path(args.out or Path("runs") / "schema-update" / f"{Path(args.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        changes, run = review(args.data, label, schema_path, out, args.previous, args.params)
    except DataError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 2
    accepted = schema_changes.chosen(changes, args.accept.split(",")) if args.accept else []
    current = schema_view.load(schema_path)
    print(f"schema: {schema_path} (version {schema_changes.version(current)})")
    print_changes(changes, accepted)
    if accepted:
        train_stats = bundle.read_stats(str(artifacts.stats_file(run.statistics, names.TRAIN)))
        updated = schema_changes.apply(current, train_stats, accepted)
        new_version = schema_changes.version(updated)
        schema_view.write(updated, schema_path)
        data_version = run.results["ingest"]["data_version"]
        schema_changes.record(schema_path, accepted, new_version, data_version, args.data)
        print(f"\nwrote {len(accepted)} change(s): {schema_path} is now version {new_version}; "
              f"recorded in {schema_changes.changelog_path(schema_path)}")
    left = [c for c in changes if c not in accepted]
    if left:
        print(f"\n{len(left)} change(s) not accepted: " + ", ".join(c.feature for c in left) +
              ". Accept with ACCEPT=<feature,...> or ACCEPT=all.")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
