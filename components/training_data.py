"""How a split reaches the model when it is too large to hold: tf.data over its Parquet shards.

- `sample`: a uniform sample of at most `rows` rows, read batch by batch (each row kept with the
  same probability), for what must see the data before training: the preprocessing layers'
  adaptation (normalisation, vocabularies), the fill values, the task and label vocabulary.
- `dataset`: the split as a tf.data pipeline: the row groups of every shard are listed, shared
  among the workers (`TF_CONFIG`: each worker reads its own row groups, so no row is read twice),
  read in parallel (interleave), turned into model inputs in chunks (components/model_inputs.py, the
  same conversion as in memory), shuffled in a bounded buffer, batched and prefetched. Memory is
  the shuffle buffer and a few chunks, whatever the split's size.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np

from flywheel import artifacts

ADAPT_ROWS = 200_000      # rows the preprocessing layers are adapted on (a uniform sample)
SHUFFLE_ROWS = 100_000    # tf.data shuffle buffer, in rows
CHUNK_ROWS = 8_192        # rows converted to model inputs at a time


def row_groups(examples_dir: str, split: str) -> list[tuple[str, int, int]]:
    """(file, row group, rows) of every row group of a split's shards."""
    import pyarrow.parquet as pq
    out = []
    for path in artifacts.split_files(examples_dir, split):
        metadata = pq.ParquetFile(str(path)).metadata
        out += [(str(path), g, metadata.row_group(g).num_rows) for g in range(metadata.num_row_groups)]
    return out


def sample(examples_dir: str, split: str, rows: int = ADAPT_ROWS, seed: int = 0):
    """At most about `rows` rows of the split, each kept with the same probability (all of them
    when the split is smaller), as a DataFrame in the split's order."""
    import pandas as pd
    total = artifacts.split_rows(examples_dir, split)
    if total <= rows:
        return artifacts.read_split(examples_dir, split)
    rng = np.random.default_rng(seed)
    keep = rows / total
    parts = []
    for batch in artifacts.split_batches(examples_dir, split, 65_536):
        mask = rng.random(batch.num_rows) < keep
        if mask.any():
            parts.append(batch.to_pandas()[mask])
    return pd.concat(parts, ignore_index=True)


def cluster() -> tuple[int, int]:
    """(this worker's index, number of workers) from TF_CONFIG (chief first, then workers); (0, 1)
    without one."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    spec = config.get("cluster", {})
    members = [("chief", i) for i in range(len(spec.get("chief", [])))] + \
              [("worker", i) for i in range(len(spec.get("worker", [])))]
    task = config.get("task", {})
    me = (task.get("type", "chief"), int(task.get("index", 0)))
    return (members.index(me) if me in members else 0), max(1, len(members))


def worker_share(units: list, index: int, count: int) -> list:
    """This worker's row groups: every count-th one; with fewer row groups than workers, every
    worker gets them all and keeps every count-th row of each (see `dataset`)."""
    return units[index::count] if len(units) >= count else units


def dataset(examples_dir: str, split: str, convert: Callable, output_signature, batch_size: int,
            shuffle: bool = True, seed: int = 0, repeat: bool = False):
    """A tf.data.Dataset of (inputs, label) batches from the split's shards. `convert` turns a
    DataFrame chunk into (dict of input arrays, label array) as the in-memory path does."""
    import pyarrow.parquet as pq
    import tensorflow as tf

    index, count = cluster()
    units = row_groups(examples_dir, split)
    mine = worker_share(units, index, count)
    every_row = len(units) >= count

    def read(path, group):
        table = pq.ParquetFile(path.decode()).read_row_group(int(group))
        frame = table.to_pandas()
        if not every_row:
            frame = frame.iloc[index::count]
        for start in range(0, len(frame), CHUNK_ROWS):
            yield convert(frame.iloc[start:start + CHUNK_ROWS])

    paths = tf.constant([u[0] for u in mine])
    groups = tf.constant([u[1] for u in mine], dtype=tf.int64)
    files = tf.data.Dataset.from_tensor_slices((paths, groups))
    if shuffle:
        files = files.shuffle(len(mine), seed=seed, reshuffle_each_iteration=True)
    chunks = files.interleave(
        lambda p, g: tf.data.Dataset.from_generator(read, args=(p, g), output_signature=output_signature),
        cycle_length=min(4, max(1, len(mine))), num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    rows = chunks.unbatch()
    if shuffle:
        rows = rows.shuffle(SHUFFLE_ROWS, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        rows = rows.repeat()
    options = tf.data.Options()
    # The shards are shared above, by row group; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return rows.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)


def rows_per_worker(examples_dir: str, split: str) -> int:
    """Rows this worker reads (for steps per epoch: every worker must take as many steps)."""
    index, count = cluster()
    units = row_groups(examples_dir, split)
    if len(units) >= count:
        return sum(u[2] for u in worker_share(units, index, count))
    return sum(len(range(index, u[2], count)) for u in units)
