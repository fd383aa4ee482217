"""Serving-time checks of request rows against the schema's SERVING environment.

Kinds (the `kind` label of flywheel_schema_anomalies_total): missing (a SERVING feature absent or
null), unknown (a key that is not a SERVING feature; counted under feature="__unknown__" so label
cardinality stays bounded whatever clients send), wrong_type, out_of_domain (not in the string
domain, or outside the int/float domain's min/max), nan (NaN in a numeric feature).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from flywheel.schema_view import Feature

UNKNOWN_FEATURE = "__unknown__"
_TYPES = {"string": (str,), "int": (int,), "float": (int, float)}


@dataclass(frozen=True)
class _Check:
    """One feature's check, precomputed: the request path of the observer runs it per value."""
    types: tuple
    values: frozenset | None
    minimum: float | None
    maximum: float | None
    string: bool


def _checks(features: dict[str, Feature]) -> dict[str, _Check]:
    return {name: _Check(_TYPES[f.kind], f.values, f.minimum, f.maximum, f.kind == "string")
            for name, f in features.items()}


_CACHE: dict[int, tuple[dict, dict]] = {}


def _compiled(features: dict[str, Feature]) -> dict[str, _Check]:
    cached = _CACHE.get(id(features))
    if cached is None or cached[0] is not features:
        if len(_CACHE) > 8:   # one entry per served version's schema; old ones go
            _CACHE.clear()
        cached = _CACHE[id(features)] = (features, _checks(features))
    return cached[1]


def check_rows(rows: list[dict], features: dict[str, Feature], keep: set[int] | None = None,
               found: Counter | None = None) -> tuple[Counter, list[dict]]:
    """-> (Counter of (feature, kind), for the rows whose index is in `keep` (all when None) only
    the values fit for drift: right type, not NaN, a plain value (a {"b64": ...} string is checked
    but not compared)). Counts are added to `found` when given."""
    found = Counter() if found is None else found
    checks = _compiled(features)
    counts: dict[tuple[str, str], int] = {}
    clean_rows = []
    for index, row in enumerate(rows):
        clean = {} if keep is None or index in keep else None
        present = 0
        for name, value in row.items():
            check = checks.get(name)
            if check is None:
                counts[(UNKNOWN_FEATURE, "unknown")] = counts.get((UNKNOWN_FEATURE, "unknown"), 0) + 1
                continue
            if value is None:
                continue  # counted as missing below
            present += 1
            kind = None
            value_type = type(value)
            if value_type not in check.types:
                if not (check.string and value_type is dict and set(value) == {"b64"}):
                    kind = "wrong_type"
            elif value_type is float and value != value:
                kind = "nan"
            elif check.values is not None:
                if value_type is str and value not in check.values:
                    counts[(name, "out_of_domain")] = counts.get((name, "out_of_domain"), 0) + 1
            elif not check.string and ((check.minimum is not None and value < check.minimum)
                                       or (check.maximum is not None and value > check.maximum)):
                counts[(name, "out_of_domain")] = counts.get((name, "out_of_domain"), 0) + 1
            if kind is not None:
                counts[(name, kind)] = counts.get((name, kind), 0) + 1
                continue
            if clean is not None and value_type is not dict:
                clean[name] = value
        if present < len(checks):
            for name in checks:
                if row.get(name) is None:
                    counts[(name, "missing")] = counts.get((name, "missing"), 0) + 1
        if clean is not None:
            clean_rows.append(clean)
    found.update(counts)
    return found, clean_rows

