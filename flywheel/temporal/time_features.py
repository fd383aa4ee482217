"""Time columns as the pipeline and the sidecar measure them: which columns hold time, and their parts.

A time column's distribution moves by definition from span to span (every span covers new
dates), so drift and skew are measured on its parts (flywheel/temporal/timeparts.py), never on its values:
`col:day_of_year` as a number, `col:month`, `col:weekday` and `col:hour` as categories written as
decimal strings ("0".."6"), and `col:trend` (fractional years) kept for the record and for the
coverage of the reference, not compared. numpy only: the sidecar imports it too.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from flywheel import schema_view
from flywheel.temporal import timeparts

TREND = timeparts.TREND


def time_format(kind: timeparts.TimeKind) -> str:
    """The schema's time format for a detected kind."""
    if kind.kind == timeparts.EPOCH_SECONDS:
        return schema_view.UNIX_SECONDS
    return schema_view.ISO_DATETIME if kind.kind == timeparts.DATETIME else schema_view.ISO_DATE


def detect(columns: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """{column: time format} of the columns whose values are times (ISO-8601 strings, epoch seconds)."""
    found = {}
    for name, values in columns.items():
        if name in skip:
            continue
        kind = timeparts.detect(np.asarray(values))
        if kind is not None:
            found[name] = time_format(kind)
    return found


def has_time_of_day(fmt: str) -> bool:
    return fmt == schema_view.UNIX_SECONDS or "%H" in fmt


def parts(name: str, values: Any, fmt: str) -> dict[str, np.ndarray]:
    """{"name:part": values} of one time column: numeric parts as floats, cyclical categories as
    decimal strings (None where the time is missing or unparseable)."""
    seconds = timeparts.parse(values).seconds
    out: dict[str, np.ndarray] = {}
    for part, array in timeparts.parts(seconds, has_time_of_day(fmt)).items():
        column = timeparts.part_column(name, part)
        if timeparts.PART_KINDS.get(part) == timeparts.CATEGORICAL_PART:
            out[column] = _decimal_strings(array)
        else:
            out[column] = array
    return out


def _decimal_strings(array: np.ndarray) -> np.ndarray:
    """Small non-negative integers (NaN for missing) as decimal strings (None), by table lookup:
    a part of a 10M-row column costs no Python call per value."""
    out = np.full(array.size, None, dtype=object)
    present = ~np.isnan(array)
    if present.any():
        values = array[present].astype(np.int64)
        table = np.array([str(v) for v in range(int(values.max()) + 1)], dtype=object)
        out[present] = table[values]
    return out


def all_parts(columns: Mapping[str, Any], formats: Mapping[str, str]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for name, fmt in formats.items():
        if name in columns:
            found.update(parts(name, columns[name], fmt))
    return found


def with_parts(frame, formats: Mapping[str, str]) -> dict[str, np.ndarray]:
    """A DataFrame's columns as arrays, and the parts of its time columns beside them."""
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    columns.update(all_parts(columns, formats))
    return columns


def compared_parts(formats: Mapping[str, str], trend_range: Mapping[str, tuple[float, float]]) -> list[str]:
    """The part columns drift compares: for each time column, the cyclical parts whose whole cycle
    the reference covers (`trend_range`: the reference's (min, max) trend in years per column)."""
    chosen = []
    for name, fmt in formats.items():
        low, high = trend_range.get(name, (np.nan, np.nan))
        if not (np.isfinite(low) and np.isfinite(high)):
            continue
        seconds = np.array([low, high]) * 365.2425 * timeparts.DAY   # trend is in years
        chosen += [timeparts.part_column(name, p) for p in timeparts.drift_parts(seconds, has_time_of_day(fmt))]
    return chosen


def compared_profiles(profiles: Mapping[str, Any], features: set[str], times: Mapping[str, str]) -> dict:
    """The reference profiles drift and skew compare (the pipeline's validate step and the monitoring
    sidecar): the compared features, and for each time column the cyclical parts whose whole cycle
    the reference covers (read off its trend profile)."""
    from flywheel import drift

    chosen = {k: v for k, v in profiles.items() if k in features}
    trend = {}
    for name in times:
        profile = profiles.get(timeparts.part_column(name, timeparts.TREND))
        if isinstance(profile, drift.NumericProfile) and profile.n:
            trend[name] = (profile.minimum, profile.maximum)
    chosen.update({c: profiles[c] for c in compared_parts(times, trend) if c in profiles})
    return chosen
