"""Ingest: read a span, record its version, redact PII, split train/eval/test deterministically.

`run()` takes plain values and paths and knows nothing of KFP; `ingest_component` is the thin
KFP wrapper. Output layout: flywheel/artifacts.py (`<output_dir>/<split>/*.parquet`).

Why these choices:
- The data version is the md5 of the bytes read (flywheel/data_version.py): for a file, its DVC md5.
- The split hashes each raw row (or the `split_key` column), never a random draw
  (components/splits.py says why).
- PII is removed in memory before anything is written, so no artifact ever holds it.
- Small inputs are held whole in pandas (here); large ones stream in record batches
  (components/streaming_ingest.py) or run on Apache Beam (components/beam_data.py), chosen by
  params.yaml `scale` (components/engines.py), with the same splits and artifacts.
"""
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from kfp import dsl

from components import engines, tables
from components.artifact_io import atomic_dir
from components.ingest_checks import check_csv_head, check_pii_mode, pii_hash, too_few_rows
from components.kfp_component import flywheel_component
from components.splits import assign_splits
from flywheel import data_version, names, storage
from flywheel.errors import DataError
from flywheel.params import ROOT, IngestParams, ScaleParams
from flywheel.report import data_card


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


def parse_csv(data: bytes, source: str) -> pd.DataFrame:
    """A CSV with a header row, as pandas reads it, after checks that name what is wrong."""
    data = check_csv_head(data, source)
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
    return parse_parquet(data, source) if tables.is_parquet(source) else parse_csv(data, source)


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
    check_pii_mode(mode)
    present = [c for c in pii_columns if c in df.columns]
    if mode == "drop":
        return df.drop(columns=present), present
    out = df.copy()
    for column in present:
        out[column] = out[column].map(pii_hash)
    return out, present


# --- the step -------------------------------------------------------------------------------
def input_size(data_path: str, data_rev: str = "") -> int:
    """Bytes of the input (every file of a directory or pattern): what `scale.mode: auto` decides
    on. A DVC path at a revision is taken as small (it is read whole)."""
    if data_rev:
        return 0
    files = tables.input_files(data_path) if storage.exists(data_path) or tables.is_pattern(data_path) else []
    return sum(tables.size(f) for f in files if storage.exists(f))


def run(data_path: str, output_dir: str | Path, params: IngestParams = IngestParams(), data_rev: str = "",
        dvc_repo: str | Path = ROOT, scale: ScaleParams = ScaleParams()) -> dict:
    """Read, check, redact, split and write the span; return the metadata to record. The path
    (`engine` in the metadata) is scale.mode, or by the input's size when it is auto."""
    engine = engines.choose(scale, input_size(data_path, data_rev))
    if params.features and engine != engines.IN_MEMORY:
        raise DataError(str(data_path), f"ingest.features builds the span in memory; the input is read by the "
                        f"{engine} path", hint="Set scale.mode: in_memory, or join a smaller table.")
    if engine == engines.STREAMING:
        from components import streaming_ingest
        return streaming_ingest.run(data_path, output_dir, params, scale, data_rev, dvc_repo)
    if engine == engines.BEAM:
        from components import beam_data
        beam_data.check_input(data_path, data_rev)
        return beam_data.ingest(data_path, output_dir, params, scale)
    return {**run_in_memory(data_path, output_dir, params, data_rev, dvc_repo), "engine": engines.IN_MEMORY}


def run_in_memory(data_path: str, output_dir: str | Path, params: IngestParams = IngestParams(), data_rev: str = "",
                  dvc_repo: str | Path = ROOT) -> dict:
    """The in-memory path: the whole span in one pandas DataFrame (small data)."""
    source = f"{data_path}@{data_rev}" if data_rev else str(data_path)
    data = read_bytes(data_path, data_rev, dvc_repo)
    df = parse(data, source)
    rows_read = len(df)
    df = check_label(df, params.label, source)
    features = {}
    if params.features:
        from components import feature_join
        df, features = feature_join.join(df, params, source)
    splits = assign_splits(df, params.split_key, tuple(params.split_buckets), source)  # raw rows, before redaction
    df, redacted = redact_pii(df, tuple(params.pii_columns), params.pii_mode)
    metadata = {
        "data_path": str(data_path), "source": source, "label": params.label, "columns": list(df.columns),
        "pii_removed": redacted, "pii_mode": params.pii_mode, "rows_read": rows_read,
        "rows_without_label": rows_read - len(df), **data_version.describe(data_path, data, data_rev, dvc_repo),
        "card_notes": data_card.user_notes(str(data_path)) if not data_rev else {},
        **({"features": features} if features else {}),
    }
    with atomic_dir(output_dir) as staging:
        for split in names.SPLITS:
            part = df[splits == split]
            if part.empty:
                raise DataError(source, too_few_rows(len(df), params, split))
            os.makedirs(staging / split)
            part.to_parquet(staging / split / names.SPLIT_FILE, index=False)
            metadata[f"rows_{split}"] = int(len(part))
    return metadata


@flywheel_component
def ingest_component(data_path: str, data_rev: str, params: dict, scale: dict, examples: dsl.Output[dsl.Dataset],
                     dvc_repo: str = ""):
    """Split a span into train/eval/test Parquet with PII removed; the data version goes in metadata.
    `params` is params.yaml's `ingest` section, `scale` its `scale` section (in memory, streaming
    or Beam; the choice goes in metadata `engine`). `data_path` is a file, a directory of shards or
    a glob (local, gs://, s3://). With `data_rev`, `data_path` is read through DVC at that git
    revision of `dvc_repo` (a path or a git URL; "" = the project checkout, which a cluster image
    does not have: pass the URL there)."""
    from components.ingest import run
    from components.kfp_component import set_metadata
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.IngestParams, params, "ingest")
    sizing = flywheel_params.build(flywheel_params.ScaleParams, scale, "scale")
    examples.metadata["params"] = flywheel_params.section_dict(settings)   # for the run's lineage record
    examples.metadata["scale"] = flywheel_params.section_dict(sizing)
    set_metadata(examples, run(data_path=data_path, output_dir=examples.path, params=settings,
                               data_rev=data_rev, dvc_repo=dvc_repo or flywheel_params.ROOT, scale=sizing))
