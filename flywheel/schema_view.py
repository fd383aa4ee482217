"""One reading of a TFDV schema, shared by training, evaluation, serving checks and the sidecar.

A `Feature` says what a model input is: its serving dtype, whether it is categorical, its domain,
whether it holds time, and its serving-signature key. Only protobuf and tensorflow-metadata are
imported, so the sidecar (no TensorFlow, no pandas) reads schemas through this module too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from flywheel import names
from flywheel.errors import DataError
from flywheel.params import ROOT

FLOAT, INT, STRING = "float", "int", "string"
# Time features (schema `time_domain`): integer epoch seconds, or ISO-8601 strings whose format the
# schema records in strftime notation (flywheel/temporal/timeparts.py recognises and parses them).
UNIX_SECONDS = "unix_seconds"
ISO_DATE, ISO_DATETIME = "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"

# TensorFlow op names, and so Keras input names and SavedModel signature keys, must match
# [A-Za-z0-9.][A-Za-z0-9_.\-/>]*, and Keras refuses "/" in a layer name. Any other character of a
# column name becomes "_"; a name that would start badly gets an "f_" prefix.
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_.-]")


def signature_key(column: str) -> str:
    key = _NOT_IN_KEY.sub("_", column)
    return key if key and re.match(r"[A-Za-z0-9.]", key) else f"f_{key}"


def signature_keys(columns: list[str]) -> dict[str, str]:
    """column -> signature key for a whole model, unique: when two columns map to one key
    ("a b" and "a_b"), the later ones get "_2", "_3", ... in column order."""
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        key, n = signature_key(column), 2
        while key in taken:
            key, n = f"{signature_key(column)}_{n}", n + 1
        keys[column] = key
        taken.add(key)
    return keys


@dataclass(frozen=True)
class Feature:
    name: str                                  # the column name in the data
    kind: str                                  # FLOAT | INT | STRING: the dtype serving receives
    categorical: bool = False
    values: frozenset[str] | None = None       # string domain, if any
    minimum: float | None = None
    maximum: float | None = None
    time_format: str = ""                      # "" = not time; UNIX_SECONDS; or an ISO strftime format
    key: str = ""                              # serving-signature input name ("" = signature_key(name))

    @property
    def time(self) -> bool:
        return bool(self.time_format)

    @property
    def time_of_day(self) -> bool:
        """The values carry a time of day (epoch seconds, or a datetime format), not only a date."""
        return self.time_format == UNIX_SECONDS or "%H" in self.time_format

    @property
    def signature_key(self) -> str:
        return self.key or signature_key(self.name)

    @property
    def tf_dtype(self) -> str:
        return {FLOAT: "float32", INT: "int64", STRING: "string"}[self.kind]


def load(path: str | Path) -> schema_pb2.Schema:
    """A text Schema proto; an unreadable file is a DataError naming it."""
    try:
        return text_format.Parse(Path(path).read_text(), schema_pb2.Schema())
    except Exception as error:  # text_format.ParseError, OSError, UnicodeDecodeError
        raise DataError(str(path), f"the file is not a readable text Schema proto ({error})") from error


def parse(text: str, source: str = "<schema>") -> schema_pb2.Schema:
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as error:
        raise DataError(source, f"the text is not a Schema proto ({error})") from error


def write(schema: schema_pb2.Schema, path: str | Path) -> None:
    Path(path).write_text(text_format.MessageToString(schema))


def in_environment(schema: schema_pb2.Schema, feature: schema_pb2.Feature, environment: str) -> bool:
    """TFDV's rule: in_environment if given, else the default environments minus not_in_environment."""
    if feature.in_environment:
        return environment in feature.in_environment
    if environment in feature.not_in_environment:
        return False
    return not schema.default_environment or environment in schema.default_environment


def is_deprecated(feature: schema_pb2.Feature) -> bool:
    return (feature.deprecated or feature.lifecycle_stage in (schema_pb2.DEPRECATED, schema_pb2.DISABLED,
                                                                 schema_pb2.DEBUG_ONLY, schema_pb2.PLANNED,
                                                                 schema_pb2.ALPHA))


def time_format(feature: schema_pb2.Feature) -> str:
    """"" for a feature without a time_domain; UNIX_SECONDS; or the domain's string format."""
    if not feature.HasField("time_domain"):
        return ""
    domain = feature.time_domain
    if domain.WhichOneof("format") == "string_format":
        return domain.string_format
    return UNIX_SECONDS


def _feature(schema: schema_pb2.Schema, feature: schema_pb2.Feature) -> Feature:
    domains = {d.name: d for d in schema.string_domain}
    kind = {schema_pb2.FLOAT: FLOAT, schema_pb2.INT: INT}.get(feature.type, STRING)
    values = minimum = maximum = None
    if feature.HasField("string_domain"):
        values = frozenset(feature.string_domain.value)
    elif feature.HasField("domain") and feature.domain in domains:
        values = frozenset(domains[feature.domain].value)
    elif feature.HasField("int_domain") or feature.HasField("float_domain"):
        d = feature.int_domain if feature.HasField("int_domain") else feature.float_domain
        minimum = d.min if d.HasField("min") else None
        maximum = d.max if d.HasField("max") else None
    time = time_format(feature)
    if kind == STRING:
        categorical = not time
    elif kind == INT:
        categorical = feature.int_domain.is_categorical or values is not None
    else:
        categorical = False
    return Feature(feature.name, kind, categorical, values, minimum, maximum, time)


def features(schema: schema_pb2.Schema, environment: str = names.ENV_SERVING, exclude: str = "") -> list[Feature]:
    """The schema's live features present in `environment`, in schema order, minus `exclude`
    (the label), each with its unique signature key."""
    chosen = [f for f in schema.feature
              if f.name != exclude and not is_deprecated(f) and in_environment(schema, f, environment)]
    keys = signature_keys([f.name for f in chosen])
    return [Feature(**{**_feature(schema, f).__dict__, "key": keys[f.name]}) for f in chosen]


def by_name(schema: schema_pb2.Schema, environment: str = names.ENV_SERVING) -> dict[str, Feature]:
    return {f.name: f for f in features(schema, environment)}


def resolve_curated(curated: str | Path | None) -> Path | None:
    """The curated schema file `curated` names (a relative path is relative to the package root,
    where the default one ships), or None when it names none: the schema is then inferred."""
    if not curated:
        return None
    path = Path(curated)
    path = path if path.is_absolute() else ROOT / path
    if not path.is_file():
        raise DataError(str(curated), f"the curated schema does not exist (looked for {path})",
                        hint='Give an existing schema.pbtxt, or "" to infer one from the data.')
    return path
