"""The model repository in TF Serving's layout: <repository>/<model_name>/<integer version>/.

Layout only; every file operation goes through flywheel.storage (local, gs://, s3://).
"""
from __future__ import annotations

from flywheel import names, storage


def model_dir(repository: str, model_name: str) -> str:
    return storage.join(repository, model_name)


def versions(repository: str, model_name: str) -> list[int]:
    """Integer versions present, ascending. Staging directories (names.STAGING_PREFIX) and any
    other non-integer names are ignored, as TF Serving ignores them."""
    return sorted(int(n) for n in storage.listdir(model_dir(repository, model_name)) if n.isdigit())


def latest_version(repository: str, model_name: str) -> int | None:
    found = versions(repository, model_name)
    return found[-1] if found else None


def production_version(repository: str, model_name: str) -> int | None:
    """The version serving production traffic: TF Serving's `latest` policy serves the highest."""
    return latest_version(repository, model_name)


def version_dir(repository: str, model_name: str, version: int) -> str:
    return storage.join(repository, model_name, str(version))


def extra_path(repository: str, model_name: str, version: int, filename: str) -> str:
    """Path of a file Flywheel keeps beside the model, e.g. names.BASELINE_STATS."""
    return storage.join(version_dir(repository, model_name, version), names.EXTRA_DIR, filename)


def run_record_path(repository: str, model_name: str, run_id: str) -> str:
    """The record the push step writes for every run that reaches it, pushed or not: what the
    run read, found, measured and decided (TF Serving ignores the non-integer directory)."""
    return storage.join(repository, model_name, names.RUNS_DIR, f"{run_id}.json")
