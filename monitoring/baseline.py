"""What the sidecar compares served traffic with: the bundle pushed beside one model version.

Read through flywheel/bundle.py from <repository>/<model>/<version>/assets.extra/ (local path or
gs://, s3://): the training statistics, the schema's SERVING environment, the evaluation scores
and the metadata. Only protobuf and numpy are needed: the sidecar never imports TensorFlow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from flywheel import bundle, names, schema_view
from flywheel import model_repository as repo
from flywheel.schema_view import Feature
from monitoring.drift import Histogram, equi_width_histogram

PREDICTION_BUCKETS = 10


@dataclass
class Baseline:
    model_name: str
    version: int
    features: dict[str, Feature]                       # SERVING environment, from the schema
    categorical: dict[str, dict[str, float]] = field(default_factory=dict)   # value -> count
    numeric: dict[str, Histogram] = field(default_factory=dict)
    predictions: Histogram | None = None
    task: str = names.BINARY
    pushed_at: float = float("nan")
    all_schema_features: frozenset[str] = frozenset()


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
    features = schema_view.by_name(schema, names.ENV_SERVING)
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
    """A version's baseline; raises FileNotFoundError / ValueError naming the file."""
    found = bundle.load(repo.version_dir(repository, model_name, version))
    return from_protos(model_name, version, found.stats, found.schema, found.eval_predictions, found.metadata)
