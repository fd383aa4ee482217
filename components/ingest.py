"""Ingest: read a span, record its version, redact PII, split train/eval/test deterministically.

`run()` takes plain values and paths and knows nothing of KFP; `ingest_component` is the thin
KFP wrapper. Output layout: `<output_dir>/<split>/data.parquet` (names.SPLIT_FILE).

Why these choices:
- The data version is the md5 of the bytes read (flywheel/data_version.py): for a file, its DVC md5.
- The split hashes each raw row (or the `split_key` column), never a random draw
  (flywheel/splits.py says why).
- PII is removed in memory before anything is written, so no artifact ever holds it.
"""
import csv
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from kfp import dsl

from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import data_card, data_version, names, storage
from flywheel.errors import DataError
from flywheel.params import ROOT, IngestParams
from flywheel.splits import assign_splits

PARQUET_SUFFIXES = (".parquet", ".pq")


# --- reading --------------------------------------------------------------------------------
def read_bytes(data_path: str, data_rev: str = "", dvc_repo: str | Path = ROOT) -> bytes:
    """The raw bytes of a local or gs:// file, or of a DVC-tracked path at a git revision."""
    if data_rev:
        import dvc.api
        try:
            with dvc.api.open(data_path, repo=str(dvc_repo), rev=data_rev, mode="rb") as f:
                return f.read()
        except Exception as error:  # dvc raises many types: PathMissingError, RevError, ...
            raise DataError(data_path, f"cannot be read at revision '{data_rev}' of the DVC repository "
                            f"{dvc_repo} ({type(error).__name__}: {error})") from error
    if not storage.exists(data_path):
        raise DataError(data_path, "the file does not exist", hint="Check the path (relative paths are "
                        f"relative to {os.getcwd()}), or run `make data` to generate the default spans.")
    if os.path.isdir(data_path):
        raise DataError(data_path, "the path is a directory; name one CSV or Parquet file")
    return storage.read_bytes(data_path)


def _header_fields(data: bytes) -> list[str]:
    first_line = data.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    return next(csv.reader([first_line]), [])


def _looks_like_a_value(name: str) -> bool:
    try:
        float(name)
        return True
    except ValueError:
        return False


def _undecodable(data: bytes, error: UnicodeDecodeError, source: str) -> DataError:
    line_start = data.rfind(b"\n", 0, error.start) + 1
    line = data.count(b"\n", 0, error.start) + 1
    column_index = data[line_start:error.start].count(b",")
    try:
        header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", "replace")]))
        column = header[column_index] if column_index < len(header) else f"#{column_index + 1}"
    except StopIteration:
        column = f"#{column_index + 1}"
    return DataError(source, f"the file is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line} cannot be "
                     "decoded", column=column,
                     hint="Re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8`).")


def parse_csv(data: bytes, source: str) -> pd.DataFrame:
    """A CSV with a header row, as pandas reads it, after checks that name what is wrong."""
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as spreadsheet exports write
    if not data.strip():
        raise DataError(source, "the file is empty" if not data else "the file holds only blank lines")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _undecodable(data, error, source) from error
    header = _header_fields(data)
    if all(_looks_like_a_value(h) or not h.strip() for h in header):
        raise DataError(source, f"the file has no header row: the first line ({', '.join(header[:5])}...) holds values, "
                        "not column names", hint="Add a first line with the column names.")
    for position, name in enumerate(header, start=1):
        if not name.strip():
            raise DataError(source, f"column {position} of the header has no name")
        if _looks_like_a_value(name):
            raise DataError(source, f"column {position} of the header is named '{name}', a value: is the "
                            "header row missing or shifted?", column=name)
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DataError(source, f"the header names column(s) {duplicates} more than once", column=duplicates[0])
    try:
        df = pd.read_csv(io.BytesIO(data), encoding="utf-8", low_memory=False)
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(source, f"the file is not a well-formed CSV file ({error})") from error
    if df.empty:
        raise DataError(source, "the file has a header but no data rows")
    for column in df.columns[df.dtypes == bool]:
        df[column] = df[column].astype(np.int64)  # TFDV has no boolean type; 0/1 is what it infers
    return df


def parse_parquet(data: bytes, source: str) -> pd.DataFrame:
    import pyarrow.parquet as pq
    if not data:
        raise DataError(source, "the file is empty")
    try:
        df = pq.read_table(io.BytesIO(data)).to_pandas()
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataError(source, f"the file is not a readable Parquet file ({error})") from error
    if df.empty:
        raise DataError(source, "the file has no rows")
    return df


def parse(data: bytes, source: str) -> pd.DataFrame:
    return parse_parquet(data, source) if source.lower().endswith(PARQUET_SUFFIXES) else parse_csv(data, source)


# --- checks and transforms ------------------------------------------------------------------
def check_label(df: pd.DataFrame, label: str, source: str) -> pd.DataFrame:
    """The label must exist and take at least two values; rows without a label are dropped."""
    if label not in df.columns:
        raise DataError(source, f"the label column '{label}' is missing; the columns are {list(df.columns)}",
                        column=label, hint="Name the label with LABEL=<column> (ingest.label in params.yaml).")
    labelled = df[df[label].notna()]
    if labelled.empty:
        raise DataError(source, "the label has no values (every row is empty)", column=label)
    values = labelled[label].unique()
    if len(values) < 2:
        raise DataError(source, f"the label has a single value ({values[0]!r}) in all {len(labelled)} rows; "
                        "a model needs at least two", column=label)
    return labelled.reset_index(drop=True)


def redact_pii(df: pd.DataFrame, pii_columns: tuple[str, ...], mode: str = "drop") -> tuple[pd.DataFrame, list[str]]:
    """Drop the PII columns, or replace each value by a salted SHA-256 prefix (joinable, not readable)."""
    if mode not in ("drop", "hash"):
        raise ValueError(f"ingest.pii_mode must be 'drop' or 'hash', not '{mode}'")
    present = [c for c in pii_columns if c in df.columns]
    if mode == "drop":
        return df.drop(columns=present), present
    out = df.copy()
    for column in present:
        out[column] = out[column].map(
            lambda v: None if pd.isna(v) else hashlib.sha256(f"flywheel:{v}".encode()).hexdigest()[:16])
    return out, present


# --- the step -------------------------------------------------------------------------------
def run(data_path: str, output_dir: str | Path, params: IngestParams = IngestParams(), data_rev: str = "",
        dvc_repo: str | Path = ROOT) -> dict:
    """Read, check, redact, split and write the span; return the metadata to record."""
    source = f"{data_path}@{data_rev}" if data_rev else str(data_path)
    data = read_bytes(data_path, data_rev, dvc_repo)
    df = parse(data, source)
    rows_read = len(df)
    df = check_label(df, params.label, source)
    splits = assign_splits(df, params.split_key, tuple(params.split_buckets), source)  # raw rows, before redaction
    df, redacted = redact_pii(df, tuple(params.pii_columns), params.pii_mode)
    metadata = {
        "data_path": str(data_path), "source": source, "label": params.label, "columns": list(df.columns),
        "pii_removed": redacted, "pii_mode": params.pii_mode, "rows_read": rows_read,
        "rows_without_label": rows_read - len(df), **data_version.describe(data_path, data, data_rev, dvc_repo),
        "card_notes": data_card.user_notes(str(data_path)) if not data_rev else {},
    }
    with atomic_dir(output_dir) as staging:
        for split in names.SPLITS:
            part = df[splits == split]
            if part.empty:
                raise DataError(source, f"the file has too few rows ({len(df)}) to fill every split "
                                f"{list(params.split_buckets)}: the {split} split is empty")
            os.makedirs(staging / split)
            part.to_parquet(staging / split / names.SPLIT_FILE, index=False)
            metadata[f"rows_{split}"] = int(len(part))
    return metadata


@flywheel_component
def ingest_component(data_path: str, data_rev: str, params: dict, examples: dsl.Output[dsl.Dataset],
                     dvc_repo: str = ""):
    """Split a span into train/eval/test Parquet with PII removed; the data version goes in metadata.
    `params` is params.yaml's `ingest` section. With `data_rev`, `data_path` is read through DVC at
    that git revision of `dvc_repo` (a path or a git URL; "" = the project checkout, which a cluster
    image does not have: pass the URL there)."""
    from components.ingest import run
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.IngestParams, params, "ingest")
    examples.metadata["params"] = flywheel_params.section_dict(settings)   # for the run's lineage record
    examples.metadata.update(run(data_path=data_path, output_dir=examples.path, params=settings,
                                 data_rev=data_rev, dvc_repo=dvc_repo or flywheel_params.ROOT))
