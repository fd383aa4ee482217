"""What the serving side records, defined once: the prediction and feedback log records, where
they are kept, and how they are written and read back.

The monitoring sidecar writes these logs; whatever builds training spans from them reads them
with the functions here. Only the standard library, orjson and flywheel.storage are imported.

Layout, under a log root (by default `<model repository>/<model>/logs`; TF Serving ignores the
directory because its name is not a version number):

    predictions/date=YYYY-MM-DD/<instance>-<seq>.jsonl.gz   closed prediction-log segments, gzip
    feedback/date=YYYY-MM-DD/<instance>-<seq>.jsonl         accepted feedback, appended as accepted

`date` is the UTC day of the first record in the file (a prediction segment closes when the day
changes, so only the last batch written before midnight, at most a fraction of a second of
traffic, can carry the next day's first records); `<instance>` is `<pod>-<start>` (the pod
name and the sidecar process's start time in milliseconds, so a restarted container never
reuses a name); `<seq>` counts up from 000001 within an instance. A feedback file on a local or
mounted volume is appended to (one per instance and day, fsync'd before the client is
answered); on an object store, where objects cannot be appended to, every commit is its own
file. A file may end in a torn line (a crash during an append): readers skip it and count it.

Every line is one JSON object, strict JSON (RFC 8259: no NaN or Infinity, no lone surrogates),
written by `encode`. Prediction record (`kind` "prediction"):

    format      1
    kind        "prediction"
    time        unix seconds (float) when the sidecar answered
    request_id  the X-Request-Id the client got back; feedback refers to it
    model       model name
    version     the model version that answered (int), or null when it is not known (the
                request named a version label, or the upstream failed)
    status      HTTP status the client got
    latency_ms  time in the sidecar, including the upstream
    pod         the instance that served it
    rows        number of rows in the request (0 when it was not read)
    features    accepted requests (status 200): the request's rows, keys as the training
                file's column names, PII redacted ("[REDACTED]"); absent otherwise
    predictions accepted requests: the model's outputs, one per row, as TF Serving returned them
    request_bytes, request_sha256
                rejected requests (any other status): the body's size and SHA-256 instead of its content
    flags       what the writer changed to keep the record strict and private, when anything:
                "non_finite" (NaN/Infinity became null), "lone_surrogate" (replaced by U+FFFD),
                "too_deep" (nesting beyond MAX_DEPTH replaced by a marker), "pii_redacted",
                "unparsed" (an accepted request whose body could not be read as rows)

Feedback record (`kind` "feedback"):

    format, kind ("feedback"), time, request_id, model, pod (the instance that accepted it)
    feedback_id the accepting instance and a counter: unique across the fleet
    labels      one per row of the request, as the training file holds the label: the class
                value for classification (a string, or a number as in the file), a number for
                regression

Joining feedback to predictions: by `request_id`; when a request id has several feedback
records, the first accepted (smallest `time`, then `feedback_id`) is the answer and the others
are duplicates.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import zlib
from typing import Any, Iterator

import orjson

from flywheel import storage

FORMAT = 1
PREDICTION, FEEDBACK = "prediction", "feedback"
LOGS_DIR = "logs"                       # <repository>/<model>/logs
LOGGED_PREDICTIONS_DIR = "predictions"  # <logs>/predictions/<day>/: what the sidecar saw and answered, online
FEEDBACK_DIR = "feedback"
SEGMENT_SUFFIX = ".jsonl.gz"
FEEDBACK_SUFFIX = ".jsonl"
REDACTED = "[REDACTED]"
TOO_DEEP = "[TOO_DEEP]"
MAX_DEPTH = 32                          # deeper nesting is cut: no legitimate predict row nests this deep

NON_FINITE, LONE_SURROGATE, DEEP, PII, UNPARSED = "non_finite", "lone_surrogate", "too_deep", "pii_redacted", "unparsed"


def logs_root(repository: str, model_name: str) -> str:
    return storage.join(repository, model_name, LOGS_DIR)


def day(time_s: float) -> str:
    return dt.datetime.fromtimestamp(time_s, dt.timezone.utc).strftime("%Y-%m-%d")


def day_dir(root: str, kind_dir: str, date: str) -> str:
    return storage.join(root, kind_dir, f"date={date}")


def file_name(instance: str, seq: int, suffix: str) -> str:
    return f"{instance}-{seq:06d}{suffix}"


def segment_path(root: str, time_s: float, instance: str, seq: int) -> str:
    return storage.join(day_dir(root, LOGGED_PREDICTIONS_DIR, day(time_s)), file_name(instance, seq, SEGMENT_SUFFIX))


def feedback_path(root: str, time_s: float, instance: str, seq: int) -> str:
    return storage.join(day_dir(root, FEEDBACK_DIR, day(time_s)), file_name(instance, seq, FEEDBACK_SUFFIX))


# --- strict JSON ---------------------------------------------------------------------------

def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _fix_text(text: str) -> str:
    # json.loads joins an escaped pair (\ud83d\ude00) into one character, so a surrogate left
    # in a str is a lone one.
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def clean(value: Any, flags: set, depth: int = 0) -> Any:
    """`value` made strict-JSON-safe: non-finite floats -> None, lone surrogates -> U+FFFD (in
    keys too), nesting beyond MAX_DEPTH -> TOO_DEEP; what changed is added to `flags`."""
    if isinstance(value, str):
        if _has_lone_surrogate(value):
            flags.add(LONE_SURROGATE)
            return _fix_text(value)
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        flags.add(NON_FINITE)
        return None
    if value is None or isinstance(value, (bool, int)):
        return value
    if depth >= MAX_DEPTH:
        flags.add(DEEP)
        return TOO_DEEP
    if isinstance(value, dict):
        return {clean(str(k), flags, depth): clean(v, flags, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, flags, depth + 1) for v in value]
    return clean(str(value), flags, depth)


def read_json(data: bytes) -> tuple[Any, bool]:
    """-> (value, strict). strict: `data` is RFC 8259 JSON, so the value holds only finite
    numbers and well-formed strings (read by orjson, about 6x faster than the json module).
    Otherwise read as Python's json module reads it (NaN and Infinity tokens, numbers beyond a
    double, lone surrogates: TF Serving accepts these too), strict False. Raises ValueError,
    UnicodeDecodeError or RecursionError when neither can read it."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data), False
    if _TWENTY_DIGITS not in bytes(data).translate(_DIGITS_AS_ZERO):
        return value, True
    return json.loads(data), False   # an integer beyond 64 bits: orjson would make it a float


# A run of 20 digits or more: 2**64 and beyond, integers orjson reads as rounded floats; the
# json module keeps them exact. (A run inside a string only costs the slower read.) Found with
# translate and a substring search: about 2 us a kilobyte, where a regular expression takes 35.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_DIGITS = b"0" * 20


def encode(record: dict, strict: bool = False) -> bytes:
    """One record as a strict JSON line in UTF-8 (no newline). `strict`: every value in the
    record came from `read_json` with strict True or is a finite number the writer computed,
    so it is written as it is (orjson); else it is checked, and cleaned if it must be, with what
    changed added to the record's `flags`."""
    if strict:
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:   # nesting beyond orjson's limit, an integer beyond 64 bits
            pass
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError, TypeError):
        pass
    flags = set(record.get("flags", ()))
    cleaned = clean(record, flags)
    if flags:
        cleaned["flags"] = sorted(flags)
    return json.dumps(cleaned, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def loads_strict(line: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as strict parsers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(line, parse_constant=refuse)


# --- reading -------------------------------------------------------------------------------

def _lines(data: bytes) -> Iterator[bytes | None]:
    """Complete lines; None for a torn last line (no newline: the write never finished)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            yield None
            return
        if end > start:
            yield data[start:end]
        start = end + 1


def decompress(data: bytes) -> bytes:
    """A gzip file's content, as far as it is whole (a torn end is cut off, never an error)."""
    out, rest = [], data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(inflater.decompress(rest))
        except zlib.error:
            break
        if not inflater.eof:
            out.append(b"")  # torn member: what was inflated is kept, the cut line is dropped by the reader
            break
        rest = inflater.unused_data
    return b"".join(out)


def parse_records(data: bytes) -> tuple[list[dict], int]:
    """-> (records, lines skipped because they were torn or not strict JSON objects)."""
    records, skipped = [], 0
    for line in _lines(data):
        if line is None:
            skipped += 1
            continue
        try:
            record = loads_strict(line)
        except (ValueError, RecursionError):
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


def read_file(path: str) -> tuple[list[dict], int]:
    """Records of one log file (gzip segment or plain JSON lines) and the number of lines skipped."""
    data = storage.read_bytes(path)
    if path.endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = decompress(data)
    return parse_records(data)


def list_files(root: str, kind_dir: str, since: str = "", until: str = "") -> list[str]:
    """Log files of one kind (LOGGED_PREDICTIONS_DIR or FEEDBACK_DIR) whose date is within [since, until]
    (YYYY-MM-DD, inclusive; "" = unbounded), in date then name order."""
    out = []
    base = storage.join(root, kind_dir)
    for entry in sorted(storage.listdir(base)):
        if not entry.startswith("date="):
            continue
        date = entry[len("date="):]
        if (since and date < since) or (until and date > until):
            continue
        directory = storage.join(base, entry)
        out += [storage.join(directory, n) for n in sorted(storage.listdir(directory))
                if not n.startswith(".") and (n.endswith(SEGMENT_SUFFIX) or n.endswith(FEEDBACK_SUFFIX))]
    return out


def read_all(root: str, kind_dir: str, since: str = "", until: str = "") -> tuple[list[dict], int]:
    records, skipped = [], 0
    for path in list_files(root, kind_dir, since, until):
        found, bad = read_file(path)
        records += found
        skipped += bad
    return records, skipped


def first_feedback(records: list[dict]) -> tuple[dict[str, dict], int]:
    """request_id -> the feedback record that answers it (first accepted), and how many were duplicates."""
    chosen: dict[str, dict] = {}
    duplicates = 0
    for record in sorted(records, key=lambda r: (r.get("time", math.inf), str(r.get("feedback_id", "")))):
        request_id = record.get("request_id")
        if request_id in chosen:
            duplicates += 1
        else:
            chosen[request_id] = record
    return chosen, duplicates


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)

