"""Where files sit inside the pipeline's artifacts: the one definition of each artifact's layout.

    examples/<split>/*.parquet         written by ingest: data.parquet in memory, or shards
                                       data-00000-of-00004.parquet (streaming, Beam); read
                                       them with read_split / split_batches, never by name
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
    """Where the in-memory path writes a split (one file)."""
    return Path(examples_dir) / split / names.SPLIT_FILE


def split_shard(examples_dir: str | Path, split: str, index: int, count: int) -> Path:
    """Shard `index` of `count` of a split, named as Beam's sharded Parquet sink names them."""
    return Path(examples_dir) / split / names.SPLIT_SHARD.format(index=index, count=count)


def split_files(examples_dir: str | Path, split: str) -> list[Path]:
    """Every Parquet file of a split, in order (one file, or the shards)."""
    found = sorted(p for p in (Path(examples_dir) / split).glob("*.parquet") if p.is_file())
    if not found:
        raise FileNotFoundError(f"no Parquet file in {Path(examples_dir) / split}: is {examples_dir} an examples artifact?")
    return found


def read_split(examples_dir: str | Path, split: str, columns: list[str] | None = None):
    """A whole split as a pandas DataFrame (the in-memory path; small data)."""
    import pyarrow.parquet as pq
    return pq.ParquetDataset([str(p) for p in split_files(examples_dir, split)]).read(
        columns=columns, use_pandas_metadata=False).to_pandas()


def split_batches(examples_dir: str | Path, split: str, batch_rows: int, columns: list[str] | None = None):
    """A split as pyarrow RecordBatches of at most `batch_rows` rows, one shard at a time, so
    memory stays bounded whatever the split's size."""
    import pyarrow.parquet as pq
    for path in split_files(examples_dir, split):
        with pq.ParquetFile(str(path)) as shard:
            yield from shard.iter_batches(batch_size=batch_rows, columns=columns, use_pandas_metadata=False)


def split_columns(examples_dir: str | Path, split: str) -> list[str]:
    """The columns of a split, from its first file's footer."""
    import pyarrow.parquet as pq
    return list(pq.read_schema(str(split_files(examples_dir, split)[0])).names)


def split_rows(examples_dir: str | Path, split: str) -> int:
    """Rows of a split, from the Parquet footers (nothing else is read)."""
    import pyarrow.parquet as pq
    return sum(pq.ParquetFile(str(p)).metadata.num_rows for p in split_files(examples_dir, split))


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
