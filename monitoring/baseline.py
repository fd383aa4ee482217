"""What the sidecar compares served traffic with: the bundle pushed beside one model version.

Read through flywheel/bundle.py from <repository>/<model>/<version>/assets.extra/ (local path or
gs://, s3://): the schema's SERVING environment, the model metadata (label vocabulary, signature
keys, task), and the drift references the pipeline compares with:
- the training split's profiles pushed with the version (baseline_profiles.json; a version pushed
  before those existed: profiles read off its TFDV statistics);
- the ones validate compares (`flywheel.temporal.time_features.compared_profiles`): the features, and a
  time feature's cyclical parts (`<column>:<part>`) whose cycle the reference covers, never its
  distinct values; served values go through the same `time_features.parts`;
- the predictions' profile from the evaluation scores (`flywheel.drift.numeric_profile`);
- the joint drift reference pushed beside the profiles (flywheel/drift/joint.py), when the
  training split was profiled in memory.
For Prometheus each profile's bins are also grouped into a few exported bins (`ExportBins`):
a numeric feature's reference deciles (the groups PSI is computed over), a categorical
feature's commonest `export_levels - 1` levels and one pool for the rest, so the number of
series stays bounded whatever the data. Only protobuf and numpy: no TensorFlow in the sidecar.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from flywheel import bundle, drift, names, schema_view, storage
from flywheel import model_repository as repo
from flywheel.drift import joint as joint_drift
from flywheel.schema_view import Feature
from flywheel.temporal import time_features
from monitoring.feedback import LabelDomain

PREDICTIONS = "__predictions__"   # the name of the predictions' drift input
OTHER = "__other__"               # exported bin pooling the levels not exported on their own


@dataclasses.dataclass(frozen=True)
class ExportBins:
    index: np.ndarray            # profile bin -> exported bin
    labels: tuple[str, ...]      # exported bin -> its `bin` label
    reference_share: np.ndarray  # exported bin -> the reference's share

    def pool(self, counts: np.ndarray) -> np.ndarray:
        return np.bincount(self.index, weights=counts, minlength=len(self.labels))


def export_bins(profile: drift.Profile, levels: int) -> ExportBins | None:
    if profile.n <= 0:
        return None
    if profile.kind == drift.NUMERIC:
        groups = drift.decile_groups(profile)
        used = np.unique(groups)
        index = np.searchsorted(used, groups)
        labels = tuple(f"d{g + 1}" for g in used)
    else:
        keep = np.argsort(-profile.counts[:-1], kind="stable")[:max(levels - 1, 0)]
        index = np.full(profile.n_bins, len(keep))
        index[keep] = np.arange(len(keep))
        labels = tuple(profile.levels[i] for i in keep) + (OTHER,)
    share = np.bincount(index, weights=profile.counts, minlength=len(labels)) / profile.n
    return ExportBins(index.astype(np.int64), labels, share)


@dataclasses.dataclass(frozen=True)
class DriftInput:
    """One compared quantity: a feature, a part of a time feature, or the predictions."""
    name: str                    # profile name: the column, `<column>:<part>`, or PREDICTIONS
    column: str                  # the column its values come from
    time_format: str             # the column's time format when `name` is one of its parts, else ""
    profile: drift.Profile
    bins: ExportBins | None

    def summarize(self, values: list, parts: dict | None = None) -> drift.Summary:
        """Raw served values (None where absent or unusable) in the profile's bins. `parts` keeps a
        time column's parts between the inputs that read the same column."""
        if self.time_format:
            parts = {} if parts is None else parts
            if self.column not in parts:
                raw = (_floats(values) if self.time_format == schema_view.UNIX_SECONDS   # numbers, as a table holds
                       else np.asarray(values, dtype=object))
                parts[self.column] = time_features.parts(self.column, raw, self.time_format)
            return self.profile.summarize(parts[self.column][self.name])
        if self.profile.kind == drift.NUMERIC:
            return self.profile.summarize(_floats(values))
        return self.profile.summarize(np.asarray(values, dtype=object))


def _floats(values: list) -> np.ndarray:
    return np.fromiter((math.nan if v is None or isinstance(v, str) else v for v in values), float, len(values))


@dataclasses.dataclass
class Baseline:
    model_name: str
    version: int
    features: dict[str, Feature]                 # SERVING environment, by column name
    metadata: dict
    inputs: list[DriftInput]
    predictions: DriftInput | None
    domain: LabelDomain
    key_to_column: dict[str, str]                # signature keys that differ from their column name
    column_to_key: dict[str, str]
    task: str = names.BINARY
    pushed_at: float = math.nan
    joint: joint_drift.JointProfile | None = None   # how the training split's features move together


def _inputs(features: dict[str, Feature], profiles: dict[str, drift.Profile], levels: int) -> list[DriftInput]:
    times = {name: f.time_format for name, f in features.items() if f.time}
    parts_of = {part: column for column in times for part in profiles if part.startswith(column + ":")}
    out = []
    for name, profile in time_features.compared_profiles(profiles, set(features), times).items():
        column = parts_of.get(name, name)
        out.append(DriftInput(name, column, times.get(column, "") if name != column else "", profile,
                              export_bins(profile, levels)))
    return out


def reference_profiles(found: bundle.Bundle) -> dict[str, drift.Profile]:
    """The profiles pushed with the version; one pushed before profiles existed: its statistics'."""
    pushed = bundle.path(found.version_dir, names.BASELINE_PROFILES)
    if storage.exists(pushed):
        return bundle.read_profiles(pushed)
    return drift.profiles_from_statistics(found.stats)


def joint_reference(found: bundle.Bundle) -> joint_drift.JointProfile | None:
    """The joint drift reference pushed with the version, or None."""
    pushed = bundle.path(found.version_dir, names.BASELINE_PROFILES)
    return bundle.read_joint(pushed) if storage.exists(pushed) else None


def from_bundle(model_name: str, version: int, found: bundle.Bundle, quantiles: int, export_levels: int) -> Baseline:
    features = schema_view.by_name(found.schema, names.ENV_SERVING)
    metadata = found.metadata
    keys = metadata.get("signature_keys") or {f.name: f.signature_key for f in features.values()}
    differing = {column: key for column, key in keys.items() if key != column}
    predictions = None
    if found.eval_predictions:
        profile = drift.numeric_profile(np.asarray(found.eval_predictions, float), quantiles)
        predictions = DriftInput(PREDICTIONS, PREDICTIONS, "", profile, export_bins(profile, export_levels))
    return Baseline(model_name, version, features, metadata,
                    _inputs(features, reference_profiles(found), export_levels), predictions,
                    LabelDomain.from_metadata(metadata), {k: c for c, k in differing.items()}, differing,
                    metadata.get("task", names.BINARY), float(metadata.get("pushed_at", math.nan)),
                    joint_reference(found))


def load(repository: str, model_name: str, version: int, quantiles: int, export_levels: int) -> Baseline:
    """A version's baseline; raises FileNotFoundError / ValueError naming the file."""
    found = bundle.load(repo.version_dir(repository, model_name, version))
    return from_bundle(model_name, version, found, quantiles, export_levels)


def rows_as_columns(rows: list[dict], key_to_column: dict[str, str]) -> list[dict[str, Any]]:
    """Rows keyed by signature keys or column names -> keyed by column names."""
    if not key_to_column:
        return rows
    return [{key_to_column.get(k, k): v for k, v in row.items()} for row in rows]
