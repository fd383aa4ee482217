"""The model repository in TF Serving's layout: <repository>/<model_name>/<integer version>/,
with version labels (production, canary, shadow) beside the versions.

Layout only; every file operation goes through flywheel.storage (local, gs://, s3://).
"""
from __future__ import annotations

import json
import time
import uuid

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
    """The version labelled production (labels below); without labels, the highest version, which
    TF Serving's `latest` policy serves."""
    return labels(repository, model_name).get(names.PRODUCTION)


def version_dir(repository: str, model_name: str, version: int) -> str:
    return storage.join(repository, model_name, str(version))


def extra_path(repository: str, model_name: str, version: int, filename: str) -> str:
    """Path of a file Flywheel keeps beside the model, e.g. names.BASELINE_STATS."""
    return storage.join(version_dir(repository, model_name, version), names.EXTRA_DIR, filename)


def run_record_path(repository: str, model_name: str, run_id: str) -> str:
    """The record the push step writes for every run that reaches it, pushed or not: what the
    run read, found, measured and decided (TF Serving ignores the non-integer directory)."""
    return storage.join(repository, model_name, names.RUNS_DIR, f"{run_id}.json")


# --- Version labels (TF Serving's version_labels) --------------------------------------------
# <repository>/<model>/labels.json records which version each label names ({"labels":
# {"production": 3, "canary": 4}, "history": [...]}) and every change with its reason. A
# repository without it (written before labels existed) keeps its old meaning: production is
# the highest version. Every change also rewrites <repository>/<model>/models.config, TF
# Serving's config for the labelled versions, which a model server polls.
HISTORY_KEPT = 1000


def labels_path(repository: str, model_name: str) -> str:
    return storage.join(model_dir(repository, model_name), names.LABELS_FILE)


def _read_labels_file(repository: str, model_name: str) -> dict | None:
    path = labels_path(repository, model_name)
    if not storage.exists(path):
        return None
    try:
        document = json.loads(storage.read_bytes(path))
        found = document["labels"]
        if not isinstance(found, dict) or not all(k in names.VERSION_LABELS and isinstance(v, int)
                                                  for k, v in found.items()):
            raise ValueError(f"labels must map {names.VERSION_LABELS} to integer versions, got {found!r}")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a version labels file ({error})") from error
    return document


def labels(repository: str, model_name: str) -> dict[str, int]:
    """{label: version} as recorded; for a repository without labels, production is the highest version."""
    document = _read_labels_file(repository, model_name)
    if document is not None:
        return dict(document["labels"])
    latest = latest_version(repository, model_name)
    return {} if latest is None else {names.PRODUCTION: latest}


def label_history(repository: str, model_name: str) -> list[dict]:
    document = _read_labels_file(repository, model_name)
    return list(document.get("history", [])) if document else []


def _served_from(repository: str, mount: str | None) -> str:
    if mount is not None:
        return mount
    return repository if storage.is_remote(repository) else names.TF_SERVING_MOUNT


def set_label(repository: str, model_name: str, label: str, version: int | None, reason: str,
              mount: str | None = None) -> dict[str, int]:
    """Point `label` at `version` (None removes it) and record why; returns the new labels.

    The models.config written beside the labels names the model's base path as TF Serving sees
    it: under `mount` (default: the volume mount, names.TF_SERVING_MOUNT) for a local or mounted
    repository, the repository's own gs:// or s3:// path for object storage, which TF Serving
    reads natively.

    A version carries one label: moving production onto the canary's version ends the canary."""
    if label not in names.VERSION_LABELS:
        raise ValueError(f"unknown version label {label!r}; labels are {names.VERSION_LABELS}")
    if version is not None and version not in versions(repository, model_name):
        raise ValueError(f"model {model_name} has no version {version} in {repository}")
    # No file yet: labels start here (push adopts an older repository's meaning first: adopt_labels).
    document = _read_labels_file(repository, model_name) or {"labels": {}, "history": []}
    current = document["labels"]
    was = current.get(label)
    if version is None:
        current.pop(label, None)
    else:
        for other in [k for k, v in current.items() if v == version and k != label]:
            if other == names.PRODUCTION:
                raise ValueError(f"version {version} is production; it cannot also be {label}")
            current.pop(other)
        current[label] = version
    if names.PRODUCTION not in current and current:
        raise ValueError(f"removing {label} would leave {model_name} without a production version")
    document["history"] = (document.get("history", []) + [
        {"time": time.time(), "label": label, "version": version, "was": was, "reason": reason}])[-HISTORY_KEPT:]
    storage.write_text(labels_path(repository, model_name), json.dumps(document, indent=2) + "\n")
    storage.write_text(storage.join(model_dir(repository, model_name), names.TF_SERVING_CONFIG),
                       tf_serving_config(model_name, current, storage.join(_served_from(repository, mount),
                                                                           model_name)))
    return dict(current)


def adopt_labels(repository: str, model_name: str) -> None:
    """Write the labels a repository without them implies (production = highest version), before
    a new version is added and the highest version stops meaning production."""
    if _read_labels_file(repository, model_name) is None and latest_version(repository, model_name) is not None:
        set_label(repository, model_name, names.PRODUCTION, latest_version(repository, model_name),
                  "labels adopted: production was the highest version")


def tf_serving_config(model_name: str, version_labels: dict[str, int], base_path: str) -> str:
    """TF Serving's ModelServerConfig (text proto) serving exactly the labelled versions, under
    their labels: clients (and the sidecar) ask for /labels/production, /labels/canary."""
    wanted = sorted(set(version_labels.values()))
    lines = ["# Written by Flywheel at every label change (flywheel/model_repository.py): the labelled",
             "# versions and their labels. TF Serving re-reads it (--model_config_file_poll_wait_seconds).",
             "model_config_list {", "  config {", f'    name: "{model_name}"', f'    base_path: "{base_path}"',
             '    model_platform: "tensorflow"', "    model_version_policy {", "      specific {"]
    lines += [f"        versions: {v}" for v in wanted]
    lines += ["      }", "    }"]
    for label in names.VERSION_LABELS:
        if label in version_labels:
            lines += ["    version_labels {", f'      key: "{label}"', f"      value: {version_labels[label]}", "    }"]
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def record_event(repository: str, model_name: str, event: dict) -> str:
    """A release decision (promotion, rollback) filed with the run records; returns its path."""
    event_id = f"release-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    path = run_record_path(repository, model_name, event_id)
    storage.write_text(path, json.dumps({"run_id": event_id, "kind": "release", "time": time.time(), **event},
                                        indent=2, default=str))
    return path
