"""Where files sit inside the pipeline's artifacts: the one definition of each artifact's layout.

    examples/<split>/data.parquet      written by ingest
    statistics/<split>/stats.pb        written by statistics (binary DatasetFeatureStatisticsList)
    statistics/<split>/profiles.json   drift reference profiles of every column and time part (flywheel/drift)
    statistics/time_columns.json       {column: time format}
    schema/schema.pbtxt                written by schema
    anomalies/report.json, ...         written by validate
    evaluation/blessing.json, ...      written by evaluate
    production/production.json         written by resolve, beside a copy of the production bundle
"""
from __future__ import annotations

import json
from pathlib import Path

from flywheel import names


def split_file(examples_dir: str | Path, split: str) -> Path:
    return Path(examples_dir) / split / names.SPLIT_FILE


def stats_file(statistics_dir: str | Path, split: str) -> Path:
    return Path(statistics_dir) / split / names.STATS_FILE


def profiles_file(statistics_dir: str | Path, split: str) -> Path:
    return Path(statistics_dir) / split / names.PROFILES_FILE


def time_columns(statistics_dir: str | Path) -> dict[str, str]:
    """{column: time format} as the statistics step decided them ({} when there are none)."""
    path = Path(statistics_dir) / names.TIME_COLUMNS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def schema_file(schema_dir: str | Path) -> Path:
    return Path(schema_dir) / names.SCHEMA_FILE


def schema_input(path: str | Path) -> Path:
    """A schema given as a schema artifact directory or as the file itself."""
    return Path(path) if Path(path).is_file() else schema_file(path)


def read_production(production_dir: str | Path) -> dict:
    """{"version": int | None, "uri": str, "repository": ..., "model_name": ...} written by resolve."""
    return json.loads((Path(production_dir) / names.PRODUCTION_FILE).read_text())
