"""Reviewed changes to the curated schema: propose what would accept validation's anomalies, apply
the accepted ones, version the schema and keep a changelog beside it.

Data changes legitimately (a new payment type appears, a range widens, a column is added or
retired). The TFDV workflow: inspect the anomaly, decide it is a new normal, update the schema,
version the result. Proposals come from TFDV's `update_schema` (domains, ranges, presence, new
columns) and from the report (a column that is gone is deprecated: kept in the schema, no longer
required, no longer a model input). Two kinds of change can hide a data error and are only
applied when the feature is named explicitly: a feature changing type (a numeric column turning
into text is usually a parsing or upstream bug) and a change to the label's values (new classes
change the task).

The version is a tag on the schema (`flywheel.schema_version:N`); every accepted change appends a
line to `<schema>.changelog.jsonl` (time, who, data version, feature, anomaly, before, after).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

VERSION_TAG = "flywheel.schema_version:"
CHANGELOG_SUFFIX = ".changelog.jsonl"
DEPRECATE, REINSTATE, UPDATE, ADD = "deprecate", "reinstate", "update", "add"


@dataclasses.dataclass(frozen=True)
class Change:
    feature: str
    action: str                 # deprecate | reinstate | update | add
    before: str                 # the feature's schema text before ("" for a new feature)
    after: str                  # and after
    why: str                    # the anomalies that prompted it
    risky: bool                 # could hide a data error: applied only when the feature is named
    risk: str = ""              # why it is risky
    what: str = ""              # the difference, readably ("values added: Crypto")

    def summary(self) -> str:
        """One line: what changes, readably."""
        if self.action == DEPRECATE:
            return "deprecated: stays in the schema, no longer required, no longer a model input"
        if self.action == REINSTATE:
            return "reinstated: required again and a model input again"
        return f"{'added: ' if self.action == ADD else ''}{self.what}"


def _values(schema: schema_pb2.Schema, feature: schema_pb2.Feature) -> set[str] | None:
    if feature.HasField("string_domain"):
        return set(feature.string_domain.value)
    if feature.HasField("domain"):
        found = next((d for d in schema.string_domain if d.name == feature.domain), None)
        return set(found.value) if found is not None else None
    return None


def difference(old_schema, old: schema_pb2.Feature | None, new_schema, new: schema_pb2.Feature) -> str:
    """What changes between two versions of a feature, in words."""
    if old is None:
        return f"{schema_pb2.FeatureType.Name(new.type)} feature" + (
            f" with values {sorted(_values(new_schema, new))}" if _values(new_schema, new) else "")
    parts = []
    if old.type != new.type:
        parts.append(f"type {schema_pb2.FeatureType.Name(old.type)} -> {schema_pb2.FeatureType.Name(new.type)}")
    before, after = _values(old_schema, old), _values(new_schema, new)
    if before is not None and after is not None and before != after:
        if after - before:
            parts.append(f"values added: {sorted(after - before)}")
        if before - after:
            parts.append(f"values removed: {sorted(before - after)}")
    elif before is not None and after is None:
        parts.append("value domain removed")
    for field in ("int_domain", "float_domain"):
        if old.HasField(field) or new.HasField(field):
            a, b = getattr(old, field), getattr(new, field)
            for bound in ("min", "max"):
                x = getattr(a, bound) if a.HasField(bound) else None
                y = getattr(b, bound) if b.HasField(bound) else None
                if x != y:
                    parts.append(f"{bound} {x} -> {y}")
    if old.presence != new.presence:
        parts.append(f"presence {text_format.MessageToString(old.presence, as_one_line=True) or 'any'} -> "
                     f"{text_format.MessageToString(new.presence, as_one_line=True) or 'any'}")
    return "; ".join(parts) or "schema details (see the changelog)"


def version(schema: schema_pb2.Schema) -> int:
    """The schema's version (1 for a schema that carries none yet)."""
    for tag in schema.annotation.tag:
        if tag.startswith(VERSION_TAG):
            return int(tag[len(VERSION_TAG):])
    return 1


def set_version(schema: schema_pb2.Schema, value: int) -> None:
    kept = [t for t in schema.annotation.tag if not t.startswith(VERSION_TAG)]
    del schema.annotation.tag[:]
    schema.annotation.tag.extend(kept + [f"{VERSION_TAG}{value}"])


def changelog_path(schema_path: str | Path) -> Path:
    path = Path(schema_path)
    return path.with_name(path.name + CHANGELOG_SUFFIX)


def _feature_text(schema: schema_pb2.Schema, name: str) -> str:
    feature = next((f for f in schema.feature if f.name == name), None)
    if feature is None:
        return ""
    text = text_format.MessageToString(feature, as_one_line=True)
    domain = feature.domain if feature.HasField("domain") else ""
    values = next((d for d in schema.string_domain if d.name == domain), None)
    return text + (f" values: {sorted(values.value)}" if values is not None else "")


# Anomalies that say a column's type changed: TFDV's update_schema keeps the old type for them,
# so the feature is inferred afresh from the new statistics.
TYPE_ANOMALIES = {"UNEXPECTED_DATA_TYPE", "FLOAT_TYPE_STRING_NOT_FLOAT", "INT_TYPE_STRING_NOT_INT",
                  "INT_TYPE_FLOAT_NOT_INT", "BOOL_TYPE_STRING_NOT_BOOL"}


def _updated(schema: schema_pb2.Schema, train_stats, retyped: set[str]) -> schema_pb2.Schema:
    """The schema TFDV's update_schema makes of the new statistics, with the retyped features as
    TFDV infers them from scratch."""
    import tensorflow_data_validation as tfdv

    updated = tfdv.update_schema(schema, train_stats)
    if retyped:
        fresh = tfdv.infer_schema(train_stats)
        for feature in updated.feature:
            if feature.name in retyped:
                new = next((f for f in fresh.feature if f.name == feature.name), None)
                if new is not None:
                    feature.CopyFrom(new)
                    if new.HasField("domain"):
                        updated.string_domain.extend([d for d in fresh.string_domain if d.name == new.domain
                                                      and d.name not in {x.name for x in updated.string_domain}])
    return updated


def propose(schema: schema_pb2.Schema, train_stats, report: list[dict], label: str) -> list[Change]:
    """The changes that would accept the report's schema anomalies, one per feature."""
    found: dict[str, dict[str, list[dict]]] = {}
    for anomaly in report:
        if anomaly.get("kind") == "schema" and anomaly["feature"] != "__dataset__":
            found.setdefault(anomaly["feature"], {}).setdefault(anomaly["anomaly"], []).append(anomaly)
    why = {feature: [f"{kind} in {', '.join(a['split'] for a in seen)}: {seen[0]['description'].strip()}"
                     for kind, seen in kinds.items()] for feature, kinds in found.items()}
    present = {f.path.step[0] for f in train_stats.datasets[0].features if f.path.step}
    updated = _updated(schema, train_stats, retyped={f for f, kinds in found.items() if set(kinds) & TYPE_ANOMALIES})
    changes = []
    for feature in schema.feature:   # TFDV does not validate a deprecated feature: its return is news
        if feature.lifecycle_stage == schema_pb2.DEPRECATED and feature.name in present:
            text = _feature_text(schema, feature.name)
            changes.append(Change(feature.name, REINSTATE, text, text, "a deprecated feature is in the data again",
                                  risky=False))
    for name, reasons in sorted(why.items()):
        before = _feature_text(schema, name)
        reason = "; ".join(dict.fromkeys(reasons))
        if before and name not in present:
            changes.append(Change(name, DEPRECATE, before, before, reason, risky=name == label,
                                  risk="the label cannot be retired" if name == label else ""))
            continue
        after = _feature_text(updated, name)
        if not after or after == before:
            continue
        old, new = (next((f for f in s.feature if f.name == name), None) for s in (schema, updated))
        type_changed = old is not None and new is not None and old.type != new.type
        risk = ("its type changes from " f"{schema_pb2.FeatureType.Name(old.type)} to {schema_pb2.FeatureType.Name(new.type)}"
                if type_changed else "the label's values change what the model predicts" if name == label else "")
        changes.append(Change(name, ADD if not before else UPDATE, before, after, reason, risky=bool(risk), risk=risk,
                              what=difference(schema, old, updated, new)))
    return changes


def chosen(changes: list[Change], accept: list[str]) -> list[Change]:
    """The changes `accept` names: "all" takes every change that is not risky; a risky one only
    when its feature is named."""
    named = {a.strip() for a in accept if a.strip()}
    return [c for c in changes if c.feature in named or ("all" in named and not c.risky)]


def apply(schema: schema_pb2.Schema, train_stats, changes: list[Change]) -> schema_pb2.Schema:
    """A copy of `schema` with the changes applied (update and add from TFDV's update_schema,
    deprecation as lifecycle_stage DEPRECATED) and its version raised by one."""
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    if not changes:
        return out
    updated = _updated(schema, train_stats, retyped={c.feature for c in changes if c.action == UPDATE and c.risky
                                                     and c.risk.startswith("its type")})
    for change in changes:
        if change.action in (DEPRECATE, REINSTATE):
            feature = next(f for f in out.feature if f.name == change.feature)
            if change.action == DEPRECATE:
                feature.lifecycle_stage = schema_pb2.DEPRECATED
                feature.ClearField("presence")
            else:
                feature.ClearField("lifecycle_stage")
            continue
        new = next(f for f in updated.feature if f.name == change.feature)
        old = next((f for f in out.feature if f.name == change.feature), None)
        if old is None:
            old = out.feature.add()
        old.CopyFrom(new)
        if new.HasField("domain"):
            domain = next(d for d in updated.string_domain if d.name == new.domain)
            kept = [d for d in out.string_domain if d.name != new.domain]
            del out.string_domain[:]
            out.string_domain.extend(kept + [domain])
    set_version(out, version(schema) + 1)
    return out


def record(schema_path: str | Path, changes: list[Change], new_version: int, data_version: str, data: str) -> None:
    """Append the accepted changes to the changelog beside the schema."""
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    who = getpass.getuser()
    with changelog_path(schema_path).open("a") as log:
        for change in changes:
            log.write(json.dumps({"time": when, "by": who, "schema_version": new_version, "data": data,
                                  "data_version": data_version, "feature": change.feature, "action": change.action,
                                  "why": change.why, "before": change.before, "after": change.after}) + "\n")
