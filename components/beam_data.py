"""The data steps as Apache Beam pipelines (`scale.mode: beam`, or auto above
`scale.in_memory_max_bytes` when `scale.beam_runner` is a distributed runner): Dataflow, Flink,
Spark or a portable runner run them on many workers; the DirectRunner runs them locally.

As TFX's ExampleGen and StatisticsGen do, and with the same artifacts as the other paths:
- ingest: the launcher makes the first pass of the streaming path (column types as pandas
  infers them, md5 of the bytes: an md5 cannot be split across workers), then Beam reads the
  input in parallel (CSV lines through `ReadFromText`, Parquet row groups through
  `ReadFromParquetBatched`), parses batches with the types fixed, and applies the same hash split
  and PII redaction as the streaming path (components/streaming_ingest.py `Plan`), writing each
  split as Parquet shards (`data-00000-of-00004.parquet`).
- statistics: TFDV's `GenerateStatistics` PTransform over each split's shards, with the time
  columns' parts added to each batch; the drift profiles are read off the statistics, as on the
  streaming path, and the parts removed.
The CSV reader splits the input at line ends, as TFX's CsvExampleGen does: a quoted value may not
hold a line break on this path (the streaming and in-memory paths read those).
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

from components import engines, streaming_ingest, streaming_statistics, tables
from components.artifact_io import atomic_dir
from flywheel import artifacts, names, storage
from flywheel.errors import DataError
from flywheel.params import IngestParams, ScaleParams


# --- ingest ---------------------------------------------------------------------------------
def parse_lines(lines: list[str], columns: list[str], read_types: dict[str, str], final: dict[str, str]):
    """A batch of CSV lines (no header) as a typed record batch with the input's final types."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    read, parse, convert = tables.csv_options(columns, read_types, 1 << 30)
    table = pacsv.read_csv(io.BytesIO("\n".join(lines).encode("utf-8")), read_options=read,
                           parse_options=parse, convert_options=convert)
    target = tables.arrow_schema(final)
    table = pa.Table.from_arrays([c.cast(target.field(n).type) for n, c in zip(table.column_names, table.columns)],
                                 schema=target)
    return table.combine_chunks().to_batches()[0] if table.num_rows else None


def typed_table(table, final: dict[str, str]):
    """A Parquet row group with the input's final types, as one record batch."""
    import pyarrow as pa
    target = tables.arrow_schema(final)
    table = pa.Table.from_arrays([table.column(n).cast(target.field(n).type) for n in target.names], schema=target)
    return table.combine_chunks().to_batches()[0] if table.num_rows else None


def _split_parts(batch, plan: streaming_ingest.Plan):
    import apache_beam as beam
    if batch is None:
        return
    for split, part in plan.split(batch).items():
        yield beam.pvalue.TaggedOutput(split, part)


def ingest(data_path: str, output_dir: str | Path, params: IngestParams, scale: ScaleParams) -> dict:
    """Ingest on Beam; the same artifacts and metadata as the streaming path."""
    import apache_beam as beam
    import pyarrow as pa
    import pyarrow.compute as pc

    source = streaming_ingest.Input(data_path)
    types, md5s, _ = streaming_ingest.scan(source, scale.batch_rows)
    plan = streaming_ingest.plan(source, params, types)
    final, read_types = types.final(), types.read_types()
    remote = storage.is_remote(str(output_dir))
    with (_direct(output_dir) if remote else atomic_dir(output_dir)) as staging:
        with beam.Pipeline(options=engines.pipeline_options(scale)) as pipeline:
            if source.parquet:
                batches = (pipeline
                           | "ReadParquet" >> beam.Create(source.files)
                           | "Expand" >> beam.io.ReadAllFromParquetBatched()
                           | "Type" >> beam.Map(typed_table, final))
            else:
                lines = [pipeline | f"ReadCsv{i}" >> beam.io.ReadFromText(f, skip_header_lines=1)
                         for i, f in enumerate(source.files)]
                batches = ((lines | "Files" >> beam.Flatten()) if len(lines) > 1 else lines[0])
                batches = (batches
                           | "Batch" >> beam.BatchElements(min_batch_size=min(1000, scale.batch_rows),
                                                         max_batch_size=scale.batch_rows)
                           | "Parse" >> beam.Map(parse_lines, list(types.columns), read_types, final))
            parts = batches | "Split" >> beam.FlatMap(_split_parts, plan).with_outputs(*names.SPLITS)
            for split in names.SPLITS:
                _ = (parts[split]
                     | f"Table{split}" >> beam.Map(lambda b: pa.Table.from_batches([b]))
                     | f"Write{split}" >> beam.io.WriteToParquetBatched(
                         storage.join(str(staging), split, "data"), plan.schema, file_name_suffix=".parquet"))
        rows, labels = {}, set()
        for split in names.SPLITS:
            rows[split] = _count_rows(staging, split)
            if rows[split] and len(labels) < 2:
                for batch in artifacts.split_batches(staging, split, scale.batch_rows, columns=[params.label]):
                    labels.update(pc.unique(batch.column(0)).to_pylist())
                    if len(labels) >= 2:
                        break
        streaming_ingest.check_outcome(source, params, rows, labels)
    return {**streaming_ingest.metadata(source, params, plan, types, md5s, rows, engines.BEAM),
            "shards": {s: len(artifacts.split_files(output_dir, s)) for s in names.SPLITS},
            "beam_runner": scale.beam_runner, "beam_workers": engines.workers(scale)}


def _count_rows(examples_dir, split: str) -> int:
    try:
        return artifacts.split_rows(examples_dir, split)
    except FileNotFoundError:
        return 0


class _direct:
    """An object-store output is written in place (no rename there; readers see it when the
    step's metadata says it is done)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        return False


# --- statistics -----------------------------------------------------------------------------
def statistics(examples_dir: str, times: dict[str, str], schema, quantiles: int, scale: ScaleParams) -> dict:
    """{split: (statistics without the time parts, drift profiles)} from TFDV's GenerateStatistics."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from tfx_bsl.arrow import table_util

    options = tfdv.StatsOptions(schema=schema, num_quantiles_histogram_buckets=quantiles,
                                use_sketch_based_topk_uniques=True)   # as in memory: a bounded sketch
    parts = set(streaming_statistics.with_time_parts(
        next(artifacts.split_batches(examples_dir, names.TRAIN, 1)), times).schema.names)
    parts -= set(artifacts.split_columns(examples_dir, names.TRAIN))
    with tempfile.TemporaryDirectory(prefix="flywheel-beam-stats-") as tmp:
        outputs = {split: str(Path(tmp) / f"{split}.pb") for split in names.SPLITS}
        with beam.Pipeline(options=engines.pipeline_options(scale)) as pipeline:
            for split in names.SPLITS:
                pattern = storage.join(str(examples_dir), split, "*.parquet")
                _ = (pipeline
                     | f"Read{split}" >> beam.io.ReadFromParquetBatched(pattern)
                     | f"Batches{split}" >> beam.FlatMap(lambda t: t.to_batches())
                     | f"Parts{split}" >> beam.Map(streaming_statistics.with_time_parts, times)
                     | f"Canonical{split}" >> beam.Map(table_util.CanonicalizeRecordBatch)
                     | f"Stats{split}" >> tfdv.GenerateStatistics(options)
                     | f"Write{split}" >> tfdv.WriteStatisticsToBinaryFile(outputs[split]))
        found = {}
        for split, path in outputs.items():
            stats = tfdv.load_stats_binary(path)
            stats.datasets[0].name = split
            found[split] = (streaming_statistics.without_features(stats, parts),
                            streaming_statistics.profiles_from_stats(stats, times))
    return found


def check_input(data_path: str, data_rev: str) -> None:
    if data_rev:
        raise DataError(data_path, "the Beam path reads files, not DVC revisions",
                        hint="Check the revision out (`dvc pull` at that revision) and pass the file, or use "
                             "scale.mode streaming.")
