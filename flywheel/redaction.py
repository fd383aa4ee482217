"""PII redaction for the prediction log: keys named as PII at any depth and in any case or
spelling ("rider_email", "RIDER_EMAIL", "Rider-Email"), and string values that match a
configured pattern (e-mail addresses, phone numbers) wherever they are."""
from __future__ import annotations

import re

from flywheel.serving_logs import MAX_DEPTH, PII, REDACTED, TOO_DEEP, DEEP

_SPELLING = re.compile(r"[^0-9a-z]+")
_KEY_CACHE_LIMIT = 4096   # keys come from clients: remember at most this many verdicts


def _normal(key: str) -> str:
    return _SPELLING.sub("_", key.lower()).strip("_")


class Redactor:
    def __init__(self, pii_fields, patterns=()):
        self.fields = frozenset(_normal(f) for f in pii_fields)
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self._verdicts: dict[str, bool] = {}

    def is_pii(self, key) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = isinstance(key, str) and _normal(key) in self.fields
            if len(self._verdicts) < _KEY_CACHE_LIMIT:
                self._verdicts[key] = verdict
        return verdict

    def rows(self, rows: list, flags: set) -> list:
        """Rows of one request redacted: a row is copied only when something in it changes; the
        PII keys of each distinct set of keys, and the pattern verdict of each distinct string,
        are worked out once per request (rows share their keys, categorical values repeat)."""
        pii_keys: dict[tuple, tuple] = {}
        matched: dict[str, bool] = {}
        pattern = self.pattern
        out = []
        for row in rows:
            if not isinstance(row, dict):
                out.append(self.value(row, flags))
                continue
            keys = tuple(row)
            pii = pii_keys.get(keys)
            if pii is None:
                pii = pii_keys[keys] = tuple(k for k in keys if self.is_pii(k))
            changed = None
            if pii:
                changed = dict(row)
                for key in pii:
                    changed[key] = REDACTED
                flags.add(PII)
            for key, value in row.items():
                value_type = type(value)
                if value_type is str:
                    hit = matched.get(value)
                    if hit is None:
                        hit = matched[value] = pattern is not None and pattern.search(value) is not None
                    if not hit or key in pii:
                        continue
                    new = pattern.sub(REDACTED, value)
                    flags.add(PII)
                elif (value_type is dict or value_type is list) and key not in pii:
                    new = self.value(value, flags, 1)
                    if new == value:
                        continue
                else:
                    continue
                if changed is None:
                    changed = dict(row)
                changed[key] = new
            out.append(row if changed is None else changed)
        return out

    def value(self, value, flags: set, depth: int = 0):
        """`value` with PII keys and matching strings replaced by REDACTED, nesting cut at MAX_DEPTH."""
        if isinstance(value, str):
            if self.pattern is not None and self.pattern.search(value):
                flags.add(PII)
                return self.pattern.sub(REDACTED, value)
            return value
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                flags.add(DEEP)
                return TOO_DEEP
            out = {}
            for k, v in value.items():
                if self.is_pii(k):
                    flags.add(PII)
                    out[k] = REDACTED
                else:
                    out[k] = self.value(v, flags, depth + 1)
            return out
        if isinstance(value, list):
            if depth >= MAX_DEPTH:
                flags.add(DEEP)
                return TOO_DEEP
            return [self.value(v, flags, depth + 1) for v in value]
        return value
