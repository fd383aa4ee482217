"""Validate a data file locally: ingest -> statistics -> schema -> validate, then print the report.

    python -m pipelines.validate_cli DATA.csv --label COLUMN [--previous OLD.csv] [--schema S.pbtxt]
    make validate DATA=path.csv LABEL=col [PREVIOUS=old.csv] [SCHEMA=schema.pbtxt]

Without --schema the schema is inferred: from --previous when given (so a column whose type
changed, or one added or removed since, is an anomaly), else from DATA itself. With --previous,
drift is measured against the previous file's train split, as the pipeline measures it against
the production model's. Besides the tables it prints the path of the HTML report (every
feature's charts and decisions on one self-contained page). Thresholds and PII columns come from params.yaml. Exit status: 0 when
nothing blocks, 1 on bad data or a blocking anomaly (the error paragraph goes to stderr).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from flywheel import artifacts, drift, names
from flywheel import options
from flywheel import params as params_mod
from flywheel.errors import DataError
from pipelines import chain, console


def format_report(report: list[dict]) -> str:
    if not report:
        return "No anomalies."
    rows = [("split", "feature", "kind", "anomaly", "value", "blocking")]
    rows += [(a["split"], a["feature"], a["kind"], a["anomaly"], str(a["value"])[:40], "yes" if a["blocking"] else "no")
             for a in report]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines += list(dict.fromkeys(f"  {a['feature']}: {a['description']}" for a in report))
    return "\n".join(lines)


def format_decisions(measurements: dict) -> str:
    """Every compared feature's drift and skew decision: test, p-values, effect size, n."""
    lines = []
    for kind, title in (("drift", "Drift against the previous file's train split"),
                        ("skew", "Skew: eval split against train split")):
        results = [drift.FeatureDrift(**{**r, **{k: float("nan") for k, v in r.items() if v is None}})
                   for r in measurements.get(kind, [])]
        if results:
            lines += [f"{title} ({sum(r.drifted for r in results)} of {len(results)} changed):",
                      drift.format_table(results), ""]
    return "\n".join(lines)


def _describe(data: str, meta: dict) -> str:
    return (f"{data}: {meta['rows_read']} rows ({meta['data_version']}); split "
            f"{meta['rows_train']}/{meta['rows_eval']}/{meta['rows_test']}; PII removed: {meta['pii_removed'] or 'none'}")


def check(data: str, label: str, out: Path, previous: str = "", schema: str = "",
          params_file: str | Path = params_mod.PARAMS_FILE) -> list[dict]:
    """Run the four steps; return the report (raises DataError when something blocks)."""
    settings = params_mod.override(params_mod.load(params_file), {"ingest.label": label})
    curated = str(Path(schema).resolve()) if schema else ""
    if curated and not Path(curated).is_file():
        raise DataError(schema, "the schema file does not exist")
    baseline = None
    if previous:
        before = chain.run(previous, out / "previous", settings, until="schema", curated_schema=curated)
        print(_describe(previous, before.results["ingest"]))
        baseline = str(artifacts.stats_file(before.statistics, names.TRAIN))
        curated = curated or str(before.schema)  # the schema of the data as it was
    current = chain.run(data, out / "current", settings, until="validate", baseline_stats=baseline or "",
                        curated_schema=curated)
    print(_describe(data, current.results["ingest"]))
    print(f"schema: {current.results['schema']['schema_source']}{' (from --previous)' if previous and not schema else ''}")
    return current.results["validate"]


def _print_artifacts(out: Path) -> None:
    """The decisions table and the anomaly report, as far as validation got."""
    anomalies = out / "current" / "anomalies"
    if (anomalies / names.MEASUREMENTS_FILE).exists():
        print(format_decisions(json.loads((anomalies / names.MEASUREMENTS_FILE).read_text())))
    if (anomalies / names.ANOMALY_REPORT).exists():
        print(format_report(json.loads((anomalies / names.ANOMALY_REPORT).read_text())))
    if (anomalies / names.REPORT_HTML).exists():
        print(f"\nreport (open in a browser, works offline): {anomalies / names.REPORT_HTML}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel validate",
                                     description="Validate a CSV or Parquet file with TFDV and print the anomaly report.")
    parser.add_argument("data", help="CSV or Parquet file")
    parser.add_argument("--label", required=True, help="label column")
    parser.add_argument("--previous", default="", help="an earlier file of the same data: drift reference and schema source")
    parser.add_argument("--schema", default="", help="text Schema proto to validate against (default: inferred)")
    parser.add_argument("--out", default="", help="where the artifacts go (default runs/validate/<name>-<time>)")
    options.add_params(parser, help="params.yaml for thresholds and PII columns")
    options.add_verbose(parser, help="show library start-up output and warnings")
    args = parser.parse_args(argv)
    console.quiet(args.verbose)
    out = Path(args.out or Path("runs") / "validate" / f"{Path(args.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        report = check(args.data, args.label, out, args.previous, args.schema, args.params)
    except DataError as error:
        _print_artifacts(out)
        print(f"\nFAILED: {error}", file=sys.stderr)
        return 1
    _print_artifacts(out)
    print(f"\nOK: nothing blocks ({len(report)} non-blocking anomal{'y' if len(report) == 1 else 'ies'}). "
          f"Artifacts: {out}{os.sep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
