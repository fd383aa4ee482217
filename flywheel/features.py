"""Feature specs read from a TFDV schema, and split data turned into model inputs.

Train and evaluate both use these, so the training and evaluation code paths agree on names,
dtypes and missing-value handling; the serving path agrees because the preprocessing lives in
the exported model itself.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import pandas as pd
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from flywheel import names

FLOAT, INT, STRING = "float", "int", "string"
# An INT feature whose training values all lie after 2001-09-09 (1e9 s) is read as epoch seconds;
# the model then derives hour of day and day of week from it.
EPOCH_SECONDS_FLOOR = 1_000_000_000


def signature_key(column: str) -> str:
    """The serving-signature input name for a column. TensorFlow names (and so SavedModel
    signature keys) allow only [A-Za-z0-9_.\\/>-]; other characters, such as the space in
    "sepal length", become "_". The mapping is recorded in the model's flywheel.json."""
    return re.sub(r"[^A-Za-z0-9_.\\/>-]", "_", column)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    name: str            # the column name in the data
    kind: str            # FLOAT | INT | STRING: the dtype serving receives
    categorical: bool

    @property
    def key(self) -> str:
        return signature_key(self.name)

    @property
    def tf_dtype(self) -> str:
        return {FLOAT: "float32", INT: "int64", STRING: "string"}[self.kind]


def load_schema(path: str) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    with open(path) as f:
        text_format.Parse(f.read(), schema)
    return schema


def feature_specs(schema: schema_pb2.Schema, label: str, environment: str = names.ENV_SERVING) -> list[FeatureSpec]:
    """Model inputs: the schema's features present in `environment`, minus the label, in schema order."""
    specs = []
    for feature in schema.feature:
        if feature.name == label or environment in feature.not_in_environment:
            continue
        if feature.in_environment and environment not in feature.in_environment:
            continue
        if feature.type == schema_pb2.FLOAT:
            specs.append(FeatureSpec(feature.name, FLOAT, False))
        elif feature.type == schema_pb2.INT:
            categorical = feature.int_domain.is_categorical or feature.WhichOneof("domain_info") == "string_domain"
            specs.append(FeatureSpec(feature.name, INT, categorical))
        else:
            specs.append(FeatureSpec(feature.name, STRING, True))
    return specs


def read_split(examples_dir: str, split: str) -> pd.DataFrame:
    return pd.read_parquet(os.path.join(examples_dir, split, names.SPLIT_FILE))


def fill_values(frame: pd.DataFrame, specs: list[FeatureSpec]) -> dict[str, object]:
    """What stands in for a missing value. Floats stay NaN (the model imputes them, so serving
    may send NaN too); integers, which serving cannot send as NaN, take the training median;
    strings take "" (out of vocabulary)."""
    fills: dict[str, object] = {}
    for spec in specs:
        if spec.kind == INT:
            median = frame[spec.name].median() if spec.name in frame else 0
            fills[spec.name] = 0 if pd.isna(median) else int(median)
        elif spec.kind == STRING:
            fills[spec.name] = ""
    return fills


def to_inputs(frame: pd.DataFrame, specs: list[FeatureSpec], fills: dict[str, object]) -> dict[str, np.ndarray]:
    """Columns as the serving signature takes them, keyed by signature key: float32, int64 or
    object (bytes-like) arrays."""
    inputs = {}
    for spec in specs:
        if spec.name not in frame:
            raise KeyError(f"feature '{spec.name}' is in the schema but not in the data (columns: {list(frame.columns)})")
        column = frame[spec.name]
        if spec.kind == FLOAT:
            inputs[spec.key] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float32)
        elif spec.kind == INT:
            inputs[spec.key] = pd.to_numeric(column, errors="coerce").fillna(fills[spec.name]).to_numpy(dtype=np.int64)
        else:
            inputs[spec.key] = column.fillna(fills[spec.name]).astype(str).to_numpy(dtype=object)
    return inputs


def read_model_metadata(model_dir: str) -> dict:
    with open(os.path.join(model_dir, names.EXTRA_DIR, names.MODEL_METADATA)) as f:
        return json.load(f)


def write_model_metadata(model_dir: str, metadata: dict) -> None:
    os.makedirs(os.path.join(model_dir, names.EXTRA_DIR), exist_ok=True)
    with open(os.path.join(model_dir, names.EXTRA_DIR, names.MODEL_METADATA), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
