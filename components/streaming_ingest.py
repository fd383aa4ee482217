"""Ingest in record batches with bounded memory (`scale.mode: streaming`, or auto above
`scale.in_memory_max_bytes` on one machine): the in-memory ingest's artifacts, never the whole span.

Two passes over the input. The first decides the column types as pandas would over the whole file
(components/tables.py) and hashes the bytes (the data version); the second reads typed record
batches and, batch by batch, drops unlabelled rows, hashes each raw row to its split
(components/splits.py: the same hash, so the same rows land in the same splits as in memory),
removes PII and appends to Parquet shards of `scale.shard_rows` rows per split. Memory is a
few batches (`scale.batch_rows`), whatever the input's size. Everything is written into a
staging directory renamed into place at the end, so bad input leaves nothing behind.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path


from components import engines, splits, tables
from components.artifact_io import atomic_dir
from components.ingest_checks import check_csv_head, check_pii_mode, pii_hash, too_few_rows
from flywheel import artifacts, data_version, names, storage
from flywheel.errors import DataError
from flywheel.params import ROOT, IngestParams, ScaleParams
from flywheel.report import data_card

HEAD_BYTES = 64 * 1024
# pyarrow's CSV block: about `batch_rows` rows of the first block's average width, within these.
MIN_BLOCK, MAX_BLOCK = 1 << 20, 256 << 20


class Input:
    """The files of a data path and how to open them (directly, or through DVC at a revision)."""

    def __init__(self, data_path: str, data_rev: str = "", dvc_repo: str | Path = ROOT):
        self.data_path, self.data_rev, self.dvc_repo = data_path, data_rev, dvc_repo
        self.source = f"{data_path}@{data_rev}" if data_rev else str(data_path)
        if data_rev:
            self.files = [data_path]
        else:
            if not (tables.is_pattern(data_path) or storage.exists(data_path)):
                raise DataError(data_path, "the file does not exist", hint=f"Check the path (relative paths are "
                                f"relative to {os.getcwd()}), or run `make data` to generate the default spans.")
            self.files = tables.input_files(data_path)
            if not self.files:
                raise DataError(data_path, "no CSV or Parquet file matches the path")
        kinds = {tables.is_parquet(f) for f in self.files}
        if len(kinds) > 1:
            raise DataError(data_path, "the path holds both CSV and Parquet files; name one format")
        self.parquet = kinds.pop()

    def open(self, path: str):
        if self.data_rev:
            import dvc.api
            try:
                return dvc.api.open(path, repo=str(self.dvc_repo), rev=self.data_rev, mode="rb")
            except Exception as error:  # dvc raises many types: PathMissingError, RevError, ...
                raise DataError(path, f"cannot be read at revision '{self.data_rev}' of the DVC repository "
                                f"{self.dvc_repo} ({type(error).__name__}: {error})") from error
        return tables.open_binary(path)

    def name(self, path: str) -> str:
        return f"{path}@{self.data_rev}" if self.data_rev else path


# --- pass 1: types and data version -----------------------------------------------------------
def _block_bytes(head: bytes, batch_rows: int) -> int:
    lines = max(1, head.count(b"\n"))
    return int(min(MAX_BLOCK, max(MIN_BLOCK, len(head) / lines * batch_rows)))


def scan(source: Input, batch_rows: int) -> tuple[tables.ColumnTypes, list[tuple[str, str]], int]:
    """(column types over every file, [(file, md5)], CSV block size in bytes)."""
    if source.parquet:
        return _scan_parquet(source)
    types, md5s, block = None, [], MIN_BLOCK
    for path in source.files:
        with source.open(path) as f:
            head = check_csv_head(f.read(HEAD_BYTES), source.name(path))
        block = _block_bytes(head, batch_rows)
        decided: dict[str, str] = {}
        while True:   # a value that does not parse as its column's kind widens the kind: start again
            with source.open(path) as raw:
                stream = tables.HashingReader(raw)
                columns, _ = tables.csv_header(stream)
                _check_columns(types, columns, source, path)
                try:
                    seen, widen = tables.scan_csv(stream, columns, block, decided)
                except Exception as error:  # pyarrow.ArrowInvalid: a row with too many fields, ...
                    raise DataError(source.name(path), f"the file is not a well-formed CSV file ({error})") from error
                if widen is None:
                    stream.drain()
                    break
            column, kind = widen
            if decided.get(column) == tables.STRING:
                raise DataError(source.name(path), "the file is not UTF-8 text", column=column,
                                hint="Re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8`).")
            decided[column] = kind
        for column, kind in decided.items():   # a kind widened in this file holds for every batch of it
            seen.kinds[column] = tables.merge_kinds(seen.kinds.get(column, tables.NULL), kind)
        md5s.append((path, stream.md5.hexdigest()))
        types = seen if types is None else types.merge(seen)
    return types, md5s, block


def _check_columns(types: tables.ColumnTypes | None, columns: list[str], source: Input, path: str) -> None:
    if types is not None and columns != types.columns:
        raise DataError(source.name(path), f"the shard's columns {columns} differ from the first shard's "
                        f"{types.columns}", hint="Every shard of a span has the same header.")


def _scan_parquet(source: Input) -> tuple[tables.ColumnTypes, list[tuple[str, str]], int]:
    import pyarrow.parquet as pq
    types, md5s = None, []
    for path in source.files:
        try:
            with source.open(path) as f, pq.ParquetFile(f) as parquet:
                seen = tables.parquet_types(parquet)
        except DataError:
            raise
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
            raise DataError(source.name(path), f"the file is not a readable Parquet file ({error})") from error
        _check_columns(types, seen.columns, source, path)
        md5s.append((path, tables.file_md5(lambda p=path: source.open(p))))
        types = seen if types is None else types.merge(seen)
    return types, md5s, 0


# --- pass 2: typed batches, split, redact, write ---------------------------------------------
def batches(source: Input, types: tables.ColumnTypes, batch_rows: int, block: int):
    import pyarrow.parquet as pq
    final = types.final()
    for path in source.files:
        with source.open(path) as f:
            if source.parquet:
                with pq.ParquetFile(f) as parquet:
                    yield from tables.parquet_batches(parquet, final, batch_rows)
            else:
                tables.csv_header(f)
                yield from tables.csv_typed_batches(f, types.read_types(), final, block)


class ShardWriter:
    """One split's Parquet shards: a new shard every `shard_rows` rows, named
    data-NNNNN-of-MMMMM.parquet (Beam's sink names) once the count is known."""

    def __init__(self, directory: Path, schema, shard_rows: int):
        self.directory, self.schema, self.shard_rows = directory, schema, shard_rows
        self.paths: list[Path] = []
        self.rows = 0
        self._writer, self._in_shard = None, 0
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, batch) -> None:
        import pyarrow.parquet as pq
        start = 0
        while start < batch.num_rows:
            if self._writer is None:
                self.paths.append(self.directory / f".shard-{len(self.paths):05d}.parquet")
                self._writer, self._in_shard = pq.ParquetWriter(str(self.paths[-1]), self.schema), 0
            take = min(batch.num_rows - start, self.shard_rows - self._in_shard)
            self._writer.write_batch(batch.slice(start, take))
            start, self._in_shard, self.rows = start + take, self._in_shard + take, self.rows + take
            if self._in_shard >= self.shard_rows:
                self._writer.close()
                self._writer = None

    def close(self, examples_dir: Path, split: str) -> int:
        if self._writer is not None:
            self._writer.close()
        for index, path in enumerate(self.paths):
            os.rename(path, artifacts.split_shard(examples_dir, split, index, len(self.paths)))
        return len(self.paths)


def _redacted(batch, pii: list[str], mode: str):
    """The batch without its PII columns (drop), or with them hashed."""
    import pyarrow as pa
    if not pii:
        return batch
    if mode == "drop":
        keep = [i for i, n in enumerate(batch.schema.names) if n not in pii]
        return pa.RecordBatch.from_arrays([batch.column(i) for i in keep], [batch.schema.names[i] for i in keep])
    arrays = [pa.array([pii_hash(v) for v in column.to_pylist()], pa.string()) if name in pii else column
              for name, column in zip(batch.schema.names, batch.columns)]
    return pa.RecordBatch.from_arrays(arrays, batch.schema.names)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with each typed record batch; plain values, so Beam can ship it to workers."""
    columns: tuple[str, ...]
    label: str
    split_key: str
    buckets: tuple[int, ...]
    pii: tuple[str, ...]
    pii_mode: str
    kept: tuple[tuple[str, str], ...]     # (column, kind) of what is written

    @property
    def schema(self):
        return tables.arrow_schema(dict(self.kept))

    def split(self, batch) -> dict[str, object]:
        """{split: the batch's labelled rows of that split, PII removed}."""
        import pyarrow as pa
        import pyarrow.compute as pc
        labelled = pc.is_valid(batch.column(self.columns.index(self.label)))
        if not pc.all(labelled).as_py():
            batch = batch.filter(labelled)
        hashed_columns = [self.split_key] if self.split_key else self.columns
        arrays = [batch.column(self.columns.index(c)).to_numpy(zero_copy_only=False) for c in hashed_columns]
        hashed = splits.column_hash(arrays[0]) if self.split_key else splits.hash_columns(arrays)
        chosen = splits.split_names(hashed, self.buckets)   # raw rows, before redaction
        out = _redacted(batch, list(self.pii), self.pii_mode)
        parts = {}
        for split in names.SPLITS:
            mask = chosen == split
            if mask.any():
                parts[split] = out.filter(pa.array(mask))
        return parts


def plan(source: Input, params: IngestParams, types: tables.ColumnTypes) -> Plan:
    """The checks the first pass allows (label, split key, rows), and the plan for the second."""
    check_pii_mode(params.pii_mode)
    splits.check_buckets(tuple(params.split_buckets))
    if params.label not in types.columns:
        raise DataError(source.source, f"the label column '{params.label}' is missing; the columns are {types.columns}",
                        column=params.label, hint="Name the label with LABEL=<column> (ingest.label in params.yaml).")
    if params.split_key and params.split_key not in types.columns:
        raise DataError(source.source, f"the split key column is missing; the columns are {types.columns}",
                        column=params.split_key, hint='Set ingest.split_key in params.yaml to an existing column, or "".')
    if types.rows == 0:
        raise DataError(source.source, "the file has a header but no data rows")
    if not types.missing.get(params.label) and types.kinds.get(params.label) == tables.NULL:
        raise DataError(source.source, "the label has no values (every row is empty)", column=params.label)
    pii = tuple(c for c in params.pii_columns if c in types.columns)
    kept = tuple((c, tables.STRING if c in pii else k) for c, k in types.final().items()
                 if not (c in pii and params.pii_mode == "drop"))
    return Plan(tuple(types.columns), params.label, params.split_key, tuple(params.split_buckets), pii,
                params.pii_mode, kept)


def check_outcome(source: Input, params: IngestParams, rows: dict[str, int], labels: set) -> None:
    """After the second pass: a label with two values at least, every split filled."""
    labelled = sum(rows.values())
    if labelled == 0:
        raise DataError(source.source, "the label has no values (every row is empty)", column=params.label)
    if len(labels) < 2:
        raise DataError(source.source, f"the label has a single value ({next(iter(labels))!r}) in all {labelled} "
                        "rows; a model needs at least two", column=params.label)
    for split in names.SPLITS:
        if rows.get(split, 0) == 0:
            raise DataError(source.source, too_few_rows(labelled, params, split))


def metadata(source: Input, params: IngestParams, the_plan: Plan, types: tables.ColumnTypes,
             md5s: list[tuple[str, str]], rows: dict[str, int], engine: str) -> dict:
    """What ingest records, the same keys on every path."""
    labelled = sum(rows.values())
    md5 = tables.combined_md5(md5s)
    return {
        "data_path": str(source.data_path), "source": source.source, "label": params.label,
        "columns": [c for c, _ in the_plan.kept], "pii_removed": list(the_plan.pii), "pii_mode": params.pii_mode,
        "rows_read": types.rows, "rows_without_label": types.rows - labelled,
        **data_version.describe_md5(source.data_path, md5, source.data_rev, source.dvc_repo, several=len(md5s) > 1),
        "card_notes": data_card.user_notes(str(source.data_path)) if not source.data_rev else {},
        **{f"rows_{split}": int(rows.get(split, 0)) for split in names.SPLITS},
        "engine": engine, "input_files": len(md5s),
    }


def run(data_path: str, output_dir: str | Path, params: IngestParams, scale: ScaleParams, data_rev: str = "",
        dvc_repo: str | Path = ROOT) -> dict:
    """The streaming ingest; the same metadata as the in-memory one, with `engine` and `shards`."""
    import pyarrow.compute as pc

    source = Input(data_path, data_rev, dvc_repo)
    types, md5s, block = scan(source, scale.batch_rows)
    the_plan = plan(source, params, types)
    labels: set = set()
    with atomic_dir(output_dir) as staging:
        writers = {split: ShardWriter(staging / split, the_plan.schema, scale.shard_rows) for split in names.SPLITS}
        for batch in batches(source, types, scale.batch_rows, block):
            for split, part in the_plan.split(batch).items():
                if len(labels) < 2:
                    labels.update(pc.unique(part.column(part.schema.get_field_index(params.label))).to_pylist())
                writers[split].write(part)
        rows = {split: w.rows for split, w in writers.items()}
        check_outcome(source, params, rows, labels)
        shards = {split: writer.close(staging, split) for split, writer in writers.items()}
    return {**metadata(source, params, the_plan, types, md5s, rows, engines.STREAMING), "shards": shards}
