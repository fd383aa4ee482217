"""A model version's bundle: the files Flywheel keeps beside a SavedModel, written and read here only.

Layout, inside a version directory `<repository>/<model>/<version>/` (or any directory laid out
the same way, such as the training step's model artifact and the resolver's production artifact):

    assets.extra/flywheel.json          model metadata: label, task, features, signature keys, ...
    assets.extra/baseline_stats.pb      TFDV statistics of the training split (binary proto)
    assets.extra/baseline_profiles.json drift reference profiles of the training split (flywheel/drift)
    assets.extra/schema.pbtxt           the schema, TRAINING and SERVING environments
    assets.extra/eval_predictions.json  {"values": [...]} the model's scores on the test split
    assets.extra/model_card.md          the model card
    assets.extra/run.json               the record of the pipeline run that pushed it

`assets.extra/` is the SavedModel directory for files the graph does not use, so TF Serving
loads the version untouched. Only protobuf and tensorflow-metadata are imported: the sidecar
reads bundles too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf import message
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from flywheel import names, schema_view, storage
from flywheel.errors import DataError

# The files every pushed version carries beside its SavedModel (versions pushed before drift
# profiles existed lack baseline_profiles.json: readers fall back to the statistics).
BASELINE_FILES = (names.BASELINE_STATS, names.BASELINE_SCHEMA, names.EVAL_PREDICTIONS, names.MODEL_METADATA)


def path(version_dir: str, filename: str) -> str:
    return storage.join(version_dir, names.EXTRA_DIR, filename)


def read_metadata(version_dir: str) -> dict:
    return json.loads(storage.read_bytes(path(version_dir, names.MODEL_METADATA)))


def write_metadata(version_dir: str, metadata: dict) -> None:
    storage.makedirs(storage.join(version_dir, names.EXTRA_DIR))
    storage.write_text(path(version_dir, names.MODEL_METADATA), json.dumps(metadata, indent=2, sort_keys=True))


def add_files(version_dir: str, files: dict[str, str]) -> None:
    """Copy files into a version's assets.extra/: {name under assets.extra: source path}."""
    storage.makedirs(storage.join(version_dir, names.EXTRA_DIR))
    for name, source in files.items():
        storage.copy_file(source, path(version_dir, name))


def copy_extras(version_dir: str, destination: str,
                filenames: tuple[str, ...] = BASELINE_FILES + (names.BASELINE_PROFILES,)) -> list[str]:
    """Copy a version's bundle files (without the SavedModel) under destination/assets.extra/;
    returns the names copied (a missing one is skipped: older versions may lack it)."""
    copied = []
    for name in filenames:
        if storage.exists(path(version_dir, name)):
            add_files(destination, {name: path(version_dir, name)})
            copied.append(name)
    return copied


@dataclass
class Bundle:
    """A version's bundle, parsed."""
    version_dir: str
    metadata: dict
    stats: statistics_pb2.DatasetFeatureStatisticsList
    schema: schema_pb2.Schema
    eval_predictions: list[float]


def read_profiles(file: str) -> dict:
    """Drift reference profiles (flywheel/drift) written as JSON: {column: profile}."""
    from flywheel import drift

    try:
        raw = json.loads(storage.read_bytes(file))
        return {name: drift.profile_from_dict(profile) for name, profile in raw["profiles"].items()}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{file} is not a drift profiles file ({error})") from error


def read_joint(file: str, profiles: dict | None = None):
    """The joint drift reference (flywheel/drift/joint.py) kept beside the profiles in the same
    file, or None when the file has none (written by the streaming or Beam path, or before)."""
    from flywheel.drift import joint

    try:
        raw = json.loads(storage.read_bytes(file))
        if raw.get("joint") is None:
            return None
        profiles = read_profiles(file) if profiles is None else profiles
        return joint.joint_profile_from_dict(raw["joint"], profiles)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{file} holds no usable joint drift reference ({error})") from error


def write_profiles(file: str, profiles: dict, joint=None) -> None:
    """The profiles and, when given, the joint reference built on them (one file: the joint
    reference encodes numeric features by these profiles, so they travel together)."""
    document = {"profiles": {k: v.to_dict() for k, v in profiles.items()}}
    if joint is not None:
        document["joint"] = joint.to_dict()
    storage.write_text(file, json.dumps(document))


def read_stats(file: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A binary DatasetFeatureStatisticsList; a file that is not one is a ValueError naming it."""
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        stats.ParseFromString(storage.read_bytes(file))
    except message.DecodeError as error:
        raise ValueError(f"{file} is not a binary DatasetFeatureStatisticsList ({error})") from error
    if not stats.datasets:
        raise ValueError(f"{file} holds no dataset")
    return stats


def load(version_dir: str) -> Bundle:
    """Read and parse a version's bundle; FileNotFoundError or ValueError naming the file."""
    for name in BASELINE_FILES:
        if not storage.exists(path(version_dir, name)):
            raise FileNotFoundError(f"bundle file missing: {path(version_dir, name)}")
    try:
        metadata = read_metadata(version_dir)
        schema = schema_view.parse(storage.read_text(path(version_dir, names.BASELINE_SCHEMA)),
                                   path(version_dir, names.BASELINE_SCHEMA))
        values = json.loads(storage.read_bytes(path(version_dir, names.EVAL_PREDICTIONS)))["values"]
    except (ValueError, KeyError, TypeError, DataError) as error:
        raise ValueError(f"bad bundle under {version_dir}: {error}") from error
    return Bundle(version_dir, metadata, read_stats(path(version_dir, names.BASELINE_STATS)), schema,
                  [float(v) for v in values])
