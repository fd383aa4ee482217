"""TFDV statistics and drift profiles of a split in record batches, with bounded memory.

TFDV's own in-process generators (the ones `generate_statistics_from_dataframe` runs) get one
record batch at a time and keep their accumulators (counts, a quantiles sketch, a Misra-Gries
sketch of the top values), so memory does not grow with the rows. The time columns' parts
(flywheel/temporal/time_features.py) ride along as extra columns of each batch: TFDV summarises them
too, and the drift profiles of every column and part are read off these statistics
(flywheel/drift `profiles_from_statistics`): exact counts for categorical features (up to
TFDV's rank histogram, 1,000 levels), TFDV's quantiles for numeric ones, where the in-memory
path computes exact quantiles from all values. `make bench-scale` measures how far apart they
are. The parts are then removed from the statistics written, which hold the split's columns only.
"""
from __future__ import annotations

from typing import Iterable

from flywheel import artifacts, drift
from flywheel.temporal import time_features

# A split this large is shared among `scale.workers` processes; below it, starting them (each
# imports TFDV) costs more than it saves.
PARALLEL_MIN_ROWS = 1_000_000


def with_time_parts(batch, times: dict[str, str]):
    """The batch with the parts of its time columns appended (categorical parts as text)."""
    import pyarrow as pa
    if not times:
        return batch
    present = {c: batch.column(batch.schema.get_field_index(c)).to_numpy(zero_copy_only=False)
               for c in times if c in batch.schema.names}
    parts = time_features.all_parts(present, times)
    arrays = list(batch.columns) + [pa.array(v, pa.string() if v.dtype == object else pa.float64())
                                    for v in parts.values()]
    return pa.RecordBatch.from_arrays(arrays, list(batch.schema.names) + list(parts))


class Accumulator:
    """TFDV's in-process statistics generators fed batch by batch."""

    def __init__(self, schema=None, quantiles: int = 100):
        import tensorflow_data_validation as tfdv
        from tensorflow_data_validation.statistics import stats_impl
        self.options = tfdv.StatsOptions(schema=schema, num_quantiles_histogram_buckets=quantiles)
        self.generators = stats_impl.get_generators(self.options, in_memory=True)
        self.accumulators = [g.create_accumulator() for g in self.generators]
        self.rows = 0

    def add(self, batch) -> None:
        from tfx_bsl.arrow import table_util
        canonical = table_util.CanonicalizeRecordBatch(batch)
        self.accumulators = [g.add_input(a, canonical) for g, a in zip(self.generators, self.accumulators)]
        self.rows += batch.num_rows

    def result(self, name: str):
        from tensorflow_data_validation.statistics import stats_impl
        stats = stats_impl.extract_statistics_output(self.accumulators, self.generators)
        stats.datasets[0].name = name
        return stats


def without_features(stats, dropped: Iterable[str]):
    """A copy of the statistics without the named features (the time parts)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2
    dropped = set(dropped)
    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.CopyFrom(stats)
    dataset = out.datasets[0]
    kept = [f for f in dataset.features if ".".join(f.path.step) not in dropped]
    del dataset.features[:]
    dataset.features.extend(kept)
    return out


def profiles_from_stats(stats, times: dict[str, str]) -> dict[str, drift.Profile]:
    """Drift profiles of every column but the time columns (their parts stand in for them)."""
    return {name: p for name, p in drift.profiles_from_statistics(stats).items() if name not in times}


def _accumulate(batches: Iterable, times: dict[str, str], schema=None, quantiles: int = 100):
    accumulator = Accumulator(schema, quantiles)
    part_names: set[str] = set()
    for batch in batches:
        with_parts = with_time_parts(batch, times)
        part_names.update(with_parts.schema.names[batch.num_columns:])
        accumulator.add(with_parts)
    return accumulator, part_names


def compute(batches: Iterable, name: str, times: dict[str, str], schema=None, quantiles: int = 100):
    """(statistics of the split's columns, drift profiles) from its record batches."""
    accumulator, part_names = _accumulate(batches, times, schema, quantiles)
    return _finish(accumulator.result(name), part_names, times)


def _finish(stats, part_names: set[str], times: dict[str, str]):
    return without_features(stats, part_names), profiles_from_stats(stats, times)


def _row_groups(examples_dir, split: str) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq
    return [(str(path), group) for path in artifacts.split_files(examples_dir, split)
            for group in range(pq.ParquetFile(str(path)).num_row_groups)]


def _read_groups(units: list[tuple[str, int]], batch_rows: int):
    import pyarrow.parquet as pq
    for path, group in units:
        yield from pq.ParquetFile(path).read_row_group(group).to_batches(max_chunksize=batch_rows)


def _partial(units: list[tuple[str, int]], times: dict[str, str], schema_bytes: bytes | None, quantiles: int,
             batch_rows: int):
    """A worker's share: its row groups' accumulators (they pickle, as TFDV's n_jobs relies on)."""
    schema = None
    if schema_bytes is not None:
        from tensorflow_metadata.proto.v0 import schema_pb2
        schema = schema_pb2.Schema.FromString(schema_bytes)
    accumulator, part_names = _accumulate(_read_groups(units, batch_rows), times, schema, quantiles)
    return accumulator.accumulators, part_names


def split_statistics(examples_dir, split: str, times: dict[str, str], schema=None, quantiles: int = 100,
                     batch_rows: int = 200_000, workers: int = 1):
    """The split's statistics and profiles. From PARALLEL_MIN_ROWS rows, `workers` processes share
    its row groups (this process takes one share while the others start), and their
    accumulators are merged: TFDV's generators are CombineFns, so the result is the same
    statistics, up to the quantiles sketch's tolerance."""
    units = _row_groups(examples_dir, split)
    workers = min(workers, len(units))
    if workers <= 1 or artifacts.split_rows(examples_dir, split) < PARALLEL_MIN_ROWS:
        return compute(_read_groups(units, batch_rows), split, times, schema, quantiles)
    import multiprocessing
    shares = [units[k::workers] for k in range(workers)]
    schema_bytes = schema.SerializeToString() if schema is not None else None
    # spawn, not fork: TensorFlow's threads do not survive a fork.
    with multiprocessing.get_context("spawn").Pool(workers - 1) as pool:
        pending = [pool.apply_async(_partial, (share, times, schema_bytes, quantiles, batch_rows))
                   for share in shares[1:]]
        mine, part_names = _accumulate(_read_groups(shares[0], batch_rows), times, schema, quantiles)
        for result in pending:
            accumulators, names_seen = result.get()
            part_names |= names_seen
            mine.accumulators = [g.merge_accumulators([a, b]) for g, a, b in
                                 zip(mine.generators, mine.accumulators, accumulators)]
    return _finish(mine.result(split), part_names, times)


def batch_columns(batch) -> dict:
    """{column: numpy values} of a pyarrow RecordBatch or a DataFrame."""
    if hasattr(batch, "num_rows") and hasattr(batch, "schema"):   # a pyarrow RecordBatch
        return {n: c.to_numpy(zero_copy_only=False) for n, c in zip(batch.schema.names, batch.columns)}
    return {c: batch[c].to_numpy() for c in batch.columns}


def summarize_batches(profiles: dict[str, drift.Profile], batches: Iterable, times: dict[str, str]) -> dict:
    """{name: summary} of record batches (or DataFrames) in the profiles' bins, time columns by
    their parts; summaries add up, so memory stays bounded whatever the split's size."""
    summaries: dict[str, drift.Summary] = {}
    for batch in batches:
        columns = batch_columns(batch)
        columns.update(time_features.all_parts(columns, times))
        for name, profile in profiles.items():
            if name in columns:
                summary = profile.summarize(columns[name])
                summaries[name] = summaries[name] + summary if name in summaries else summary
    return summaries


def first_rows(examples_dir, split: str, rows: int):
    """The first `rows` rows of a split as a DataFrame (time columns are detected on a sample)."""
    batch = next(artifacts.split_batches(examples_dir, split, rows), None)
    return batch.to_pandas() if batch is not None else None
