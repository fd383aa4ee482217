"""Input tables read in record batches with bounded memory: CSV and Parquet, one file, a directory
of shards or a glob pattern, local, gs:// or s3:// (through flywheel/storage.py).

Column types follow what pandas.read_csv infers over the whole file, so the streaming and Beam
paths write the same columns as the in-memory path and hash each row to the same split:
- int64 when every value is an integer and none is missing;
- float64 when every value is a number, or an integer column has a missing value;
- True/False columns become 0/1 int64 (as ingest does with pandas' bool), float64 with a gap;
- text otherwise; the tokens pandas reads as missing (PANDAS_NA, and "") are missing.
A CSV is read twice: a first pass as text decides the types (and hashes the bytes for the data
version), the second reads typed batches. Parquet files carry their types; an integer column
with a missing value anywhere (its footer's null counts) becomes float64, as pandas reads it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Callable, Iterator

from flywheel import storage

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
# pandas.read_csv's default na_values (pandas 1.5, io/parsers/readers.py STR_NA_VALUES).
PANDAS_NA = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
             "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
TRUE_VALUES = ("True", "TRUE", "true")
FALSE_VALUES = ("False", "FALSE", "false")
INT, FLOAT, BOOL, STRING, NULL = "int", "float", "bool", "string", "null"
# How two batches' kinds of one column combine: numbers widen to float, anything else to text.
_RANK = {NULL: 0, INT: 1, FLOAT: 2}
READ_CHUNK = 8 * 1024 * 1024


def is_parquet(path: str) -> bool:
    return str(path).lower().endswith(PARQUET_SUFFIXES)


def is_pattern(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def input_files(data_path: str) -> list[str]:
    """The files a data path names: itself, the CSV or Parquet files of a directory, or the files
    matching a glob pattern; sorted, so the data version does not depend on listing order."""
    if is_pattern(data_path):
        if storage.is_remote(data_path):
            import tensorflow as tf
            found = tf.io.gfile.glob(data_path)
        else:
            import glob
            found = glob.glob(data_path)
        return sorted(f for f in found if not storage.isdir(f))
    if storage.isdir(data_path):
        names = [n for n in storage.listdir(data_path) if n.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)
                 and not n.startswith(".")]
        return sorted(storage.join(data_path, n) for n in names)
    return [data_path]


def size(path: str) -> int:
    if storage.is_remote(path):
        import tensorflow as tf
        return int(tf.io.gfile.stat(path).length)
    return os.path.getsize(path)


def open_binary(path: str):
    """A binary file object for a local or object-store path."""
    if storage.is_remote(path):
        import tensorflow as tf
        return tf.io.gfile.GFile(path, "rb")
    return open(path, "rb")


class HashingReader(io.RawIOBase):
    """A read-only stream that updates an md5 with every byte read through it, so a file is
    hashed in the same pass that parses it."""

    def __init__(self, raw):
        self._raw = raw
        self.md5 = hashlib.md5()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.md5.update(data)
        self.bytes += n
        return n

    def drain(self) -> None:
        """Hash what the parser left unread (it stops at the last complete row)."""
        while data := self._raw.read(READ_CHUNK):
            self.md5.update(data)
            self.bytes += len(data)


def file_md5(opener: Callable) -> str:
    md5 = hashlib.md5()
    with opener() as f:
        while data := f.read(READ_CHUNK):
            md5.update(data)
    return md5.hexdigest()


def combined_md5(md5s: list[tuple[str, str]]) -> str:
    """One file: its md5 (its DVC md5). Several: the md5 of their listing [{"md5", "relpath"}],
    which changes when any file's bytes or name change."""
    if len(md5s) == 1:
        return md5s[0][1]
    listing = [{"md5": m, "relpath": os.path.basename(p)} for p, m in md5s]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest()


# --- types --------------------------------------------------------------------------------
def kind_of(arrow_type) -> str:
    import pyarrow as pa
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_null(arrow_type):
        return NULL
    if pa.types.is_integer(arrow_type):
        return INT
    if pa.types.is_floating(arrow_type):
        return FLOAT
    return BOOL if pa.types.is_boolean(arrow_type) else STRING


def merge_kinds(a: str, b: str) -> str:
    if a == b or b == NULL:
        return a
    if a == NULL:
        return b
    if a in _RANK and b in _RANK:
        return a if _RANK[a] >= _RANK[b] else b
    return STRING


def wider(kind: str) -> str:
    """The next kind to try when a value does not parse as `kind` (pandas' widening)."""
    return {NULL: INT, INT: FLOAT}.get(kind, STRING)


@dataclasses.dataclass
class ColumnTypes:
    """What the first pass found: each column's kind and whether it ever misses a value; merged
    over batches (and over Beam workers) with `merge`."""
    columns: list[str]
    kinds: dict[str, str]
    missing: dict[str, bool]
    rows: int = 0

    def add_batch(self, batch) -> "ColumnTypes":
        for field, array in zip(batch.schema, batch.columns):
            self.kinds[field.name] = merge_kinds(self.kinds.get(field.name, NULL), kind_of(field.type))
            self.missing[field.name] = self.missing.get(field.name, False) or array.null_count > 0
        self.rows += batch.num_rows
        return self

    def merge(self, other: "ColumnTypes") -> "ColumnTypes":
        kinds = {c: merge_kinds(self.kinds.get(c, NULL), other.kinds.get(c, NULL)) for c in self.columns}
        missing = {c: self.missing.get(c, False) or other.missing.get(c, False) for c in self.columns}
        return ColumnTypes(self.columns, kinds, missing, self.rows + other.rows)

    def final(self) -> dict[str, str]:
        """{column: int | float | string}: what pandas gives the whole file."""
        out = {}
        for c in self.columns:
            kind, missing = self.kinds.get(c, NULL), self.missing.get(c, False)
            if kind == NULL or (kind in (INT, BOOL) and missing):
                out[c] = FLOAT
            elif kind == BOOL:
                out[c] = INT
            else:
                out[c] = kind
        return out

    def read_types(self) -> dict[str, str]:
        """The type each column is parsed as in the typed pass (bool columns as bool, then cast)."""
        final = self.final()
        return {c: BOOL if self.kinds.get(c) == BOOL else final[c] for c in self.columns}


def arrow_type(kind: str):
    import pyarrow as pa
    return {INT: pa.int64(), FLOAT: pa.float64(), STRING: pa.string(), BOOL: pa.bool_()}[kind]


def arrow_schema(types: dict[str, str]):
    import pyarrow as pa
    return pa.schema([(c, arrow_type(k)) for c, k in types.items()])


# --- CSV ----------------------------------------------------------------------------------
def csv_options(columns: list[str], read_types: dict[str, str], block_bytes: int):
    """pyarrow CSV options for a stream positioned after the header row (`columns`); columns
    without a type in `read_types` are inferred, without dates and times (pandas keeps them as text)."""
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(block_size=block_bytes, use_threads=True, column_names=columns)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={c: arrow_type(k) for c, k in read_types.items() if k != NULL},
                                   null_values=list(PANDAS_NA), strings_can_be_null=True,
                                   quoted_strings_can_be_null=True, true_values=list(TRUE_VALUES),
                                   false_values=list(FALSE_VALUES), timestamp_parsers=[])
    return read, parse, convert


def csv_header(stream) -> tuple[list[str], bytes]:
    """The header row of a CSV stream, and its bytes; the stream is left at the first data row."""
    import csv
    first = stream.readline()
    return next(csv.reader([first.decode("utf-8-sig", "replace").rstrip("\r\n")]), []), first


def _failed_column(error: Exception, columns: list[str]) -> str | None:
    import re
    found = re.search(r"In CSV column #(\d+)", str(error))
    return columns[int(found.group(1))] if found and int(found.group(1)) < len(columns) else None


def scan_csv(stream, columns: list[str], block_bytes: int,
             decided: dict[str, str]) -> tuple[ColumnTypes, tuple[str, str] | None]:
    """One typed pass over a CSV stream (after its header) with the kinds `decided` so far and
    pyarrow's inference for the other columns. Returns what it saw, and (column, kind to try)
    when a value did not parse as its column's kind (None when the pass completed): the caller
    records the wider kind and starts again, so a file costs one pass plus one per widening."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read, parse, convert = csv_options(columns, decided, block_bytes)
    seen = ColumnTypes(columns, {}, {})
    reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    inferred = {f.name: kind_of(f.type) for f in reader.schema}
    odd = [f.name for f in reader.schema if inferred[f.name] == STRING
           and not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    try:
        if odd:   # inferred dates, times, timestamps: text, as pandas reads them
            return seen, (odd[0], STRING)
        for batch in reader:
            seen.add_batch(batch)
    except pa.ArrowInvalid as error:
        failed = _failed_column(error, columns)
        if failed is None:
            raise
        return seen, (failed, wider(decided.get(failed, inferred.get(failed, NULL))))
    finally:
        del reader
    return seen, None


def csv_typed_batches(stream, read_types: dict[str, str], final: dict[str, str], block_bytes: int) -> Iterator:
    """Typed record batches with the final types (bool columns parsed as bool, cast to 0/1)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    read, parse, convert = csv_options(list(read_types), read_types, block_bytes)
    target = arrow_schema(final)
    reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    try:
        for batch in reader:
            yield pa.RecordBatch.from_arrays([c.cast(target.field(n).type) if c.type != target.field(n).type else c
                                              for n, c in zip(batch.schema.names, batch.columns)], schema=target)
    finally:
        del reader


# --- Parquet ------------------------------------------------------------------------------
def parquet_types(parquet_file) -> ColumnTypes:
    """Kinds from a Parquet file's schema; integer columns with a null anywhere (footer null
    counts; a row group without statistics counts as having one) become float."""
    import pyarrow as pa

    schema = parquet_file.schema_arrow
    metadata = parquet_file.metadata
    kinds, missing = {}, {}
    for i, field in enumerate(schema):
        t = field.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        kinds[field.name] = (INT if pa.types.is_integer(t) else FLOAT if pa.types.is_floating(t)
                             else BOOL if pa.types.is_boolean(t) else STRING)
        nulls = False
        for g in range(metadata.num_row_groups):
            stats = metadata.row_group(g).column(i).statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                nulls = True
                break
        missing[field.name] = nulls
    return ColumnTypes(list(schema.names), kinds, missing, metadata.num_rows)


def parquet_batches(parquet_file, final: dict[str, str], batch_rows: int) -> Iterator:
    import pyarrow as pa
    target = arrow_schema(final)
    for batch in parquet_file.iter_batches(batch_size=batch_rows, use_pandas_metadata=False):
        yield pa.RecordBatch.from_arrays([c.cast(target.field(n).type) for n, c in
                                          zip(batch.schema.names, batch.columns)], schema=target)
