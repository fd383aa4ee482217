"""What the sidecar compares served traffic with: the files pushed beside one model version.

Read from <repository>/<model>/<version>/assets.extra/ (local path or gs://, s3://):
baseline_stats.pb (TFDV statistics of the train split), schema.pbtxt (SERVING environment),
eval_predictions.json and flywheel.json. Only protobuf and numpy are needed: the sidecar never
imports TensorFlow.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import message, text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from flywheel import model_repository as repo
from flywheel import names
from monitoring.drift import Histogram, equi_width_histogram

PREDICTION_BUCKETS = 10


@dataclass(frozen=True)
class FeatureSpec:
    """One SERVING-environment feature: its schema type and domain."""
    name: str
    kind: str                                  # float | int | string (schema type)
    values: frozenset[str] | None = None       # string domain, if any
    minimum: float | None = None
    maximum: float | None = None


@dataclass
class Baseline:
    model_name: str
    version: int
    features: dict[str, FeatureSpec]                       # SERVING environment, from the schema
    categorical: dict[str, dict[str, float]] = field(default_factory=dict)   # value -> count
    numeric: dict[str, Histogram] = field(default_factory=dict)
    predictions: Histogram | None = None
    task: str = names.BINARY
    pushed_at: float = float("nan")
    all_schema_features: frozenset[str] = frozenset()


def serving_features(schema: schema_pb2.Schema, env: str = names.ENV_SERVING) -> dict[str, FeatureSpec]:
    domains = {d.name: d for d in schema.string_domain}
    specs = {}
    for feature in schema.feature:
        if feature.in_environment:
            present = env in feature.in_environment
        elif env in feature.not_in_environment:
            present = False
        else:
            present = not schema.default_environment or env in schema.default_environment
        if not present:
            continue
        kind = {schema_pb2.FLOAT: "float", schema_pb2.INT: "int", schema_pb2.BYTES: "string"}.get(feature.type, "string")
        values = minimum = maximum = None
        if feature.HasField("string_domain"):
            values = frozenset(feature.string_domain.value)
        elif feature.HasField("domain") and feature.domain in domains:
            values = frozenset(domains[feature.domain].value)
        elif feature.HasField("int_domain"):
            d = feature.int_domain
            minimum = d.min if d.HasField("min") else None
            maximum = d.max if d.HasField("max") else None
        elif feature.HasField("float_domain"):
            d = feature.float_domain
            minimum = d.min if d.HasField("min") else None
            maximum = d.max if d.HasField("max") else None
        specs[feature.name] = FeatureSpec(feature.name, kind, values, minimum, maximum)
    return specs


def categorical_counts(stats: statistics_pb2.FeatureNameStatistics) -> dict[str, float]:
    """value -> count as TFDV's GetStringValuesWithCounts reads it: the rank histogram, else top values."""
    string_stats = stats.string_stats
    if string_stats.rank_histogram.buckets:
        return {b.label: b.sample_count for b in string_stats.rank_histogram.buckets}
    return {v.value: v.frequency for v in string_stats.top_values}


def standard_histogram(stats: statistics_pb2.FeatureNameStatistics) -> Histogram | None:
    for hist in stats.num_stats.histograms:
        if hist.type == statistics_pb2.Histogram.STANDARD:
            return Histogram.from_proto(hist)
    return None


def from_protos(model_name: str, version: int, stats: statistics_pb2.DatasetFeatureStatisticsList,
                schema: schema_pb2.Schema, eval_predictions: list[float], metadata: dict) -> Baseline:
    features = serving_features(schema)
    baseline = Baseline(model_name, version, features, task=metadata.get("task", names.BINARY),
                        pushed_at=float(metadata.get("pushed_at", math.nan)),
                        all_schema_features=frozenset(f.name for f in schema.feature))
    if stats.datasets:
        for feature in stats.datasets[0].features:
            name = feature.path.step[0] if feature.path.step else feature.name
            if name not in features:
                continue
            if feature.HasField("string_stats"):
                baseline.categorical[name] = categorical_counts(feature)
            elif feature.HasField("num_stats"):
                hist = standard_histogram(feature)
                if hist is not None and hist.buckets:
                    baseline.numeric[name] = hist
    if eval_predictions:
        baseline.predictions = equi_width_histogram(np.asarray(eval_predictions, float), PREDICTION_BUCKETS)
    return baseline


def load(repository: str, model_name: str, version: int) -> Baseline:
    """Read a version's baseline files; raises FileNotFoundError / ValueError naming the file."""
    def path(filename: str) -> str:
        return repo.extra_path(repository, model_name, version, filename)

    def read(filename: str) -> bytes:
        if not repo.exists(path(filename)):
            raise FileNotFoundError(f"baseline file missing: {path(filename)}")
        return repo.read_bytes(path(filename))

    try:
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(read(names.BASELINE_STATS))
        schema = text_format.Parse(read(names.BASELINE_SCHEMA).decode(), schema_pb2.Schema())
        eval_values = json.loads(read(names.EVAL_PREDICTIONS))["values"]
        metadata = json.loads(read(names.MODEL_METADATA))
    except (ValueError, KeyError, text_format.ParseError, message.DecodeError) as err:
        raise ValueError(f"bad baseline under {repo.version_dir(repository, model_name, version)}: {err}") from err
    return from_protos(model_name, version, stats, schema, eval_values, metadata)
