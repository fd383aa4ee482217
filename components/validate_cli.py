"""Validate a data file locally: ingest -> statistics -> schema -> validate, then print the report.

    python -m components.validate_cli DATA.csv --label COLUMN [--previous OLD.csv] [--schema S.pbtxt]
    make validate DATA=path.csv LABEL=col [PREVIOUS=old.csv] [SCHEMA=schema.pbtxt]

Without --schema the schema is inferred: from --previous when given (so a column whose type
changed, or one added or removed since, is an anomaly), else from DATA itself. With --previous,
drift is measured against the previous file's train split, as the pipeline measures it against
the production model's. Thresholds and PII columns come from params.yaml. Exit status: 0 when
nothing blocks, 1 on bad data or a blocking anomaly (the error paragraph goes to stderr).
"""
import argparse
import os
import sys
import time
from pathlib import Path

from flywheel import names
from flywheel import params as params_mod
from flywheel.errors import DataError


def _prepare(data: str, label: str, work: Path, settings, schema_path: Path | None) -> Path:
    """Ingest and statistics of one file; returns its statistics directory."""
    from components import ingest, statistics
    meta = ingest.run(data, work / "examples", label, pii_columns=settings.ingest.pii_columns,
                      pii_mode=settings.ingest.pii_mode, split_key=settings.ingest.split_key,
                      split_buckets=settings.ingest.split_buckets)
    statistics.run(work / "examples", work / "statistics", work / names.STATS_HTML, schema_path=schema_path)
    print(f"{data}: {meta['rows_read']} rows ({meta['data_version']}); split "
          f"{meta['rows_train']}/{meta['rows_eval']}/{meta['rows_test']}; PII removed: {meta['pii_removed'] or 'none'}")
    return work / "statistics"


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


def check(data: str, label: str, out: Path, previous: str = "", schema: str = "", params_file: str | Path = params_mod.PARAMS_FILE) -> list[dict]:
    """Run the four steps; return the report (raises DataError when something blocks)."""
    from components import schema as schema_step
    from components import validate
    from components.statistics import stats_path
    settings = params_mod.load(params_file)
    curated = Path(schema).resolve() if schema else None
    if curated and not curated.is_file():
        raise DataError(schema, "the schema file does not exist")
    baseline = None
    reference_stats = None
    if previous:
        reference_stats = _prepare(previous, label, out / "previous", settings, curated)
        baseline = str(stats_path(reference_stats, names.TRAIN))
    current_stats = _prepare(data, label, out / "current", settings, curated)
    origin = schema_step.run(reference_stats or current_stats, out / "schema", label, curated)
    print(f"schema: {origin['schema_source']}{' (from --previous)' if previous and not curated else ''}")
    v = settings.validate
    return validate.run(current_stats, out / "schema", out / "anomalies", baseline_stats=baseline,
                        thresholds=validate.Thresholds(v.drift_linf, v.drift_jsd, v.skew_linf, v.skew_jsd),
                        source=data, block_on_drift=v.block_on_drift)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.validate_cli",
                                     description="Validate a CSV or Parquet file with TFDV and print the anomaly report.")
    parser.add_argument("data", help="CSV or Parquet file")
    parser.add_argument("--label", required=True, help="label column")
    parser.add_argument("--previous", default="", help="an earlier file of the same data: drift reference and schema source")
    parser.add_argument("--schema", default="", help="text Schema proto to validate against (default: inferred)")
    parser.add_argument("--out", default="", help="where the artifacts go (default runs/validate/<name>-<time>)")
    parser.add_argument("--params", default=str(params_mod.PARAMS_FILE), help="params.yaml for thresholds and PII columns")
    args = parser.parse_args(argv)
    out = Path(args.out or params_mod.ROOT / "runs" / "validate" / f"{Path(args.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        report = check(args.data, args.label, out, args.previous, args.schema, args.params)
    except DataError as error:
        report_file = out / "anomalies" / names.ANOMALY_REPORT
        if report_file.exists():
            import json
            print(format_report(json.loads(report_file.read_text())))
        print(f"\nFAILED: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"\nOK: nothing blocks ({len(report)} non-blocking anomal{'y' if len(report) == 1 else 'ies'}). "
          f"Artifacts: {out}{os.sep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
