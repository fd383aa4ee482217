"""The checks ingest makes on every path (in memory, streaming, Beam), each naming what is wrong:
a CSV's first bytes, the PII mode, splits too small to fill; and the PII hash."""
import csv
import hashlib

import pandas as pd

from flywheel.errors import DataError
from flywheel.params import IngestParams


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


def check_csv_head(data: bytes, source: str) -> bytes:
    """The checks a CSV's first bytes allow (empty, not UTF-8, header missing, unnamed or
    repeated columns), each naming what is wrong; returns the data without a byte-order mark.
    The streaming and Beam paths run them on each file's first block."""
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as spreadsheet exports write
    if not data.strip():
        raise DataError(source, "the file is empty" if not data else "the file holds only blank lines")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(data) - 4:   # not just a character cut at the end of a block
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
    return data


def pii_hash(value) -> str | None:
    """A PII value replaced by a salted SHA-256 prefix: joinable, not readable."""
    return None if pd.isna(value) else hashlib.sha256(f"flywheel:{value}".encode()).hexdigest()[:16]


def check_pii_mode(mode: str) -> None:
    if mode not in ("drop", "hash"):
        raise ValueError(f"ingest.pii_mode must be 'drop' or 'hash', not '{mode}'")


def too_few_rows(rows: int, params: IngestParams, split: str) -> str:
    return (f"the file has too few rows ({rows}) to fill every split {list(params.split_buckets)}: "
            f"the {split} split is empty")
