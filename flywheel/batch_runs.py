"""Where batch scoring runs are kept, and which one is the latest: written by `make batch` and the
batch pipeline, read by the sidecar's lookup (monitoring/lookup.py).

Layout, under a batch root (by default `<model repository>/<model>/batch`; TF Serving ignores the
directory because its name is not a version number):

    <run>/predictions/data-NNNNN-of-MMMMM.parquet   key, row, model, version, one column per output
    <run>/bad_rows.parquet                           row, key, column, value, reason (listed ones)
    <run>/lookup.sqlite                              key -> the row's answer (with batch.key_column)
    <run>/report.json, measurements.json, report.html, anomalies.pbtxt   the checks of the input
    <run>/summary.json                               counts, timing, drifted features
    <run>/run.json                                   the lineage record: data, model, code, settings
    LATEST.json                                      {"run": <run>, "version", "scored_at", ...}

A run directory appears whole (written under a temporary name, then renamed) and LATEST.json is
written after it, so a reader that follows LATEST.json never sees a partial run. Only the
standard library and flywheel.storage are imported: the sidecar reads this too.
"""
from __future__ import annotations

import json
import time
import uuid

from flywheel import names, storage


def root(repository: str, model_name: str, output_root: str = "") -> str:
    """The batch root: `output_root` (params batch.output_root) or <repository>/<model>/batch."""
    return output_root or storage.join(repository, model_name, names.BATCH_DIR)


def new_run_name(version: int, now: float | None = None) -> str:
    """A run's directory name: UTC time, version and a short random part (sorts by time)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-v{version}-{uuid.uuid4().hex[:6]}"


def run_dir(batch_root: str, run: str) -> str:
    return storage.join(batch_root, run)


def read_latest(batch_root: str) -> dict | None:
    """The LATEST.json record, or None when no run has been published (or it is unreadable)."""
    path = storage.join(batch_root, names.BATCH_LATEST)
    try:
        record = json.loads(storage.read_bytes(path)) if storage.exists(path) else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("run"), str) else None


def publish(batch_root: str, run: str, summary: dict) -> dict:
    """Make `run` (already complete under batch_root) the latest: LATEST.json, written last."""
    record = {"run": run, "model": summary.get("model"), "version": summary.get("version"),
              "scored_at": summary.get("scored_at"), "rows": summary.get("rows_scored"),
              "key_column": summary.get("key_column", ""), "lookup": bool(summary.get("lookup_keys"))}
    storage.write_text(storage.join(batch_root, names.BATCH_LATEST), json.dumps(record, indent=2) + "\n")
    return record
