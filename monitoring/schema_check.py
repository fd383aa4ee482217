"""Serving-time checks of request rows against the schema's SERVING environment.

Kinds (the `kind` label of flywheel_schema_anomalies_total): missing (a SERVING feature absent or
null), unknown (a key that is not a SERVING feature; counted under feature="__unknown__" so label
cardinality stays bounded whatever clients send), wrong_type, out_of_domain (not in the string
domain, or outside the int/float domain's min/max), nan (NaN in a numeric feature).
"""
from __future__ import annotations

import math
from collections import Counter

from flywheel.schema_view import Feature

UNKNOWN_FEATURE = "__unknown__"


def _type_ok(spec: Feature, value) -> bool:
    if isinstance(value, bool):
        return False
    if spec.kind == "string":
        return isinstance(value, str) or (isinstance(value, dict) and set(value) == {"b64"})
    if spec.kind == "int":
        return isinstance(value, int)
    return isinstance(value, (int, float))


def check_rows(rows: list[dict], features: dict[str, Feature]) -> tuple[Counter, list[dict]]:
    """-> (Counter of (feature, kind), rows with only the values fit for drift: right type, not NaN)."""
    found: Counter = Counter()
    clean_rows = []
    for row in rows:
        clean = {}
        for name, value in row.items():
            spec = features.get(name)
            if spec is None:
                found[(UNKNOWN_FEATURE, "unknown")] += 1
                continue
            if value is None:
                continue  # counted as missing below
            if not _type_ok(spec, value):
                found[(name, "wrong_type")] += 1
                continue
            if isinstance(value, float) and math.isnan(value):
                found[(name, "nan")] += 1
                continue
            if spec.values is not None and isinstance(value, str) and value not in spec.values:
                found[(name, "out_of_domain")] += 1
            elif spec.kind != "string" and ((spec.minimum is not None and value < spec.minimum)
                                            or (spec.maximum is not None and value > spec.maximum)):
                found[(name, "out_of_domain")] += 1
            clean[name] = value
        for name in features:
            if row.get(name) is None:
                found[(name, "missing")] += 1
        clean_rows.append(clean)
    return found, clean_rows
