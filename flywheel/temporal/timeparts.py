"""Time columns: recognise ISO-8601 dates and datetimes (strings) and epoch seconds, parse them, and
derive the parts a model and drift checks use. Plain numpy, so the pipeline and the monitoring
sidecar read times the same way.

Parsing keeps the wall-clock time as written: "2026-03-05T08:30:00+05:00" is 08:30 on 5 March,
as seconds since 1970-01-01 of that wall-clock time (the offset is checked, then set aside).
Behaviour follows local time (rush hour is 08:00 where the trip is), and the trend moves by at
most 14 hours, a rounding error in years.

Parts: `trend` (fractional calendar years, e.g. 2026.17), `day_of_year` (1-366), `month` (1-12),
`weekday` (0 = Monday ... 6 = Sunday) and, when the column carries times of day, `hour` (0-23).
The trend moves by definition from span to span and is not a drift feature; drift is measured on
the cyclical parts (never per distinct value), and only on those whose whole cycle the reference
covers (`drift_parts`): a week of data has seen every weekday but not every month.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

DATE, DATETIME, EPOCH_SECONDS = "date", "datetime", "epoch_seconds"
TREND, DAY_OF_YEAR, MONTH, WEEKDAY, HOUR = "trend", "day_of_year", "month", "weekday", "hour"
NUMERIC_PART, CATEGORICAL_PART = "numeric", "categorical"
# How drift compares each cyclical part: day of year as a number (KS), the others as levels.
PART_KINDS = {DAY_OF_YEAR: NUMERIC_PART, MONTH: CATEGORICAL_PART, WEEKDAY: CATEGORICAL_PART, HOUR: CATEGORICAL_PART}
DAY = 86400
# The length of each part's cycle, and of one step of it.
CYCLE_SECONDS = {DAY_OF_YEAR: 365 * DAY, MONTH: 365 * DAY, WEEKDAY: 7 * DAY, HOUR: DAY}
PART_UNIT = {DAY_OF_YEAR: DAY, MONTH: DAY, WEEKDAY: DAY, HOUR: 3600}

# Numbers read as epoch seconds lie between 2001-09-09 (1e9 s: smaller values are more likely
# counts or ids) and 2100-01-01.
EPOCH_MIN, EPOCH_MAX = 1_000_000_000, 4_102_444_800
# A string column is a time column when this share of its non-missing sampled values parse.
MIN_PARSED_SHARE = 0.95
SAMPLE_SIZE = 1000
_MAX_LENGTH = 40            # longer strings are not ISO-8601 times; skip the regex
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})"
                  r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
                  r"(Z|[+-]\d{2}(?::?\d{2})?)?)?")


@dataclasses.dataclass(frozen=True)
class TimeKind:
    kind: str                   # date | datetime | epoch_seconds
    has_time: bool              # carries times of day (then `hour` is a part)


@dataclasses.dataclass(frozen=True)
class ParsedTimes:
    seconds: np.ndarray         # float64 wall-clock seconds since 1970-01-01; NaN if missing or invalid
    missing: int                # None, NaN, empty string
    invalid: int                # present but not a time (e.g. "2026-02-30", "soon")


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _parse_one(text: str) -> tuple[float, bool] | None:
    """(seconds, has a time part) of one ISO-8601 date or datetime, or None."""
    if len(text) > _MAX_LENGTH:
        return None
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        days = np.datetime64(f"{year}-{month}-{day}", "D").astype(np.int64)
    except ValueError:
        return None
    if hour is None:
        return float(days) * DAY, False
    h, mi, s = int(hour), int(minute), int(second or 0)
    if h > 23 or mi > 59 or s > 60:
        return None
    if offset not in (None, "Z"):
        digits = offset[1:].replace(":", "")
        if int(digits[:2]) > 18 or (len(digits) == 4 and int(digits[2:]) > 59):
            return None
    frac = float(f"0.{fraction}") if fraction else 0.0
    return float(days) * DAY + h * 3600 + mi * 60 + min(s, 59) + frac, True


def _numeric(values: Any) -> np.ndarray | None:
    array = np.asarray(values)
    if array.dtype.kind in "iuf":
        return array.astype(float).reshape(-1)
    return None


def parse(values: Any) -> ParsedTimes:
    """Times as wall-clock seconds: ISO-8601 strings, or numbers taken as epoch seconds. Each distinct
    string is parsed once."""
    numbers = _numeric(values)
    if numbers is not None:
        missing = int(np.isnan(numbers).sum())
        valid = np.isfinite(numbers)
        return ParsedTimes(np.where(valid, numbers, np.nan), missing, int((~valid).sum()) - missing)
    array = np.asarray(values, dtype=object).reshape(-1)
    seconds = np.full(array.size, np.nan)
    missing = invalid = 0
    cache: dict[Any, float | None] = {}
    for i, v in enumerate(array):
        if _is_missing(v):
            missing += 1
            continue
        key = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        if key not in cache:
            parsed = _parse_one(key) if isinstance(key, str) else None
            cache[key] = parsed[0] if parsed else None
        if cache[key] is None:
            invalid += 1
        else:
            seconds[i] = cache[key]
    return ParsedTimes(seconds, missing, invalid)


def _sample(array: np.ndarray, size: int) -> np.ndarray:
    if array.size <= size:
        return array
    return array[np.linspace(0, array.size - 1, size).astype(np.int64)]


def detect(values: Any, sample_size: int = SAMPLE_SIZE) -> TimeKind | None:
    """The time kind of a column, judged on an evenly spaced sample of its values, or None.

    Strings: at least 95% of the non-missing sampled values are ISO-8601 dates or datetimes (at
    least YYYY-MM-DD). Numbers: every finite value is an epoch second between 2001 and 2100."""
    numbers = _numeric(values)
    if numbers is not None:
        finite = _sample(numbers[np.isfinite(numbers)], sample_size)
        if finite.size and np.all((finite >= EPOCH_MIN) & (finite < EPOCH_MAX)):
            return TimeKind(EPOCH_SECONDS, bool(np.any(finite % DAY != 0)))
        return None
    array = np.asarray(values, dtype=object).reshape(-1)
    present = [v for v in _sample(array, sample_size) if not _is_missing(v)]
    if not present:
        return None
    parsed = [_parse_one(v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
              if isinstance(v, (str, bytes)) else None for v in present]
    good = [p for p in parsed if p is not None]
    if len(good) < MIN_PARSED_SHARE * len(present):
        return None
    with_time = any(has_time for _, has_time in good)
    carries_time = any(seconds % DAY != 0 for seconds, _ in good)
    return TimeKind(DATETIME if with_time else DATE, carries_time)


def parts(seconds: Any, has_time: bool) -> dict[str, np.ndarray]:
    """Trend, day of year, month, weekday and (with `has_time`) hour of wall-clock seconds, as
    float arrays with NaN where the time is missing."""
    seconds = np.asarray(seconds, dtype=float).reshape(-1)
    ok = np.isfinite(seconds)
    s = seconds[ok]
    days = np.floor(s / DAY).astype(np.int64)
    date = days.astype("datetime64[D]")
    year_start = date.astype("datetime64[Y]")
    next_year = (year_start + 1).astype("datetime64[D]").astype(np.int64)
    start_days = year_start.astype("datetime64[D]").astype(np.int64)
    year_seconds = (next_year - start_days) * DAY
    computed = {
        TREND: year_start.astype(np.int64) + 1970 + (s - start_days * DAY) / year_seconds,
        DAY_OF_YEAR: days - start_days + 1,
        MONTH: date.astype("datetime64[M]").astype(np.int64) % 12 + 1,
        WEEKDAY: (days + 3) % 7,            # 1970-01-01 was a Thursday
    }
    if has_time:
        computed[HOUR] = np.floor((s - days * DAY) / 3600)
    out = {}
    for name, value in computed.items():
        full = np.full(seconds.size, np.nan)
        full[ok] = value
        out[name] = full
    return out


def drift_parts(reference_seconds: Any, has_time: bool) -> tuple[str, ...]:
    """The cyclical parts drift should compare: those whose whole cycle the reference covers."""
    s = np.asarray(reference_seconds, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return ()
    # A reference has seen every value of a cycle when it spans the cycle less one unit of the part:
    # 1 to 7 January (dates, or times up to 7 January 23:59) covers every weekday.
    covered = float(s.max() - s.min())
    candidates = [DAY_OF_YEAR, MONTH, WEEKDAY] + ([HOUR] if has_time else [])
    return tuple(p for p in candidates if covered >= CYCLE_SECONDS[p] - PART_UNIT[p])


def part_column(column: str, part: str) -> str:
    """The name of a derived part column, e.g. 'pickup_date:weekday'."""
    return f"{column}:{part}"
