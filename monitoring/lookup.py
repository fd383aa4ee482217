"""Precomputed answers served by key: the sidecar answers a predict request from the latest batch
scoring run (components/batch_score.py) when every row names a key it holds, and sends it to the
online model otherwise.

Design. The batch run writes each row's answer, as TF Serving's REST API would give it, into a
SQLite table keyed by `batch.key_column` (a B-tree on disk: `lookup.sqlite` beside the
predictions). The sidecar follows the batch root's LATEST.json every `batch.reload_s` and opens
the newest run's index read-only, in place when the repository is a local or mounted path, else
from a copy in `batch.local_dir`; only SQLite's page cache (CACHE_KIB) is held in memory,
whatever the number of keys. A request is looked up when its rows carry the key column:
- every key found, scored within `batch.max_age_s`, by the version served now (unless
  `batch.require_served_version` is false): the sidecar answers `{"predictions": [...]}` itself,
  with `X-Flywheel-Answered-By: batch`;
- otherwise (a key missing, an old batch, another version, a row without a key, more than
  MAX_KEYS rows): the request, without the key column, goes to the online model, as any request does.
Either way the prediction is logged like any other (flywheel/serving_logs.py: the rows without
the key, the answers, the version that computed them) and counted: rows by outcome (hit, miss,
stale, other_version), requests by outcome (answered, fallback), the loaded batch's age, keys and
version (monitoring/metrics.py). Requests that do not mention the key column are not touched.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import threading
from typing import Callable

from flywheel import batch_runs, names, storage
from flywheel.params import BatchParams

log = logging.getLogger(__name__)
CACHE_KIB = 2048          # SQLite's page cache per connection, in KiB: the lookup's memory
CHUNK = 500               # keys per query (SQLite's bound on parameters is larger)
# Lookups run on the event loop (about 20 us a key here): a request with more keyed rows than this
# goes online unlooked-up, so one large request cannot hold the loop for long.
MAX_KEYS = 2000
ANSWERED_BY = "X-Flywheel-Answered-By"
HIT, MISS, STALE, OTHER_VERSION = "hit", "miss", "stale", "other_version"
ROW_OUTCOMES = (HIT, MISS, STALE, OTHER_VERSION)
ANSWERED, FALLBACK = "answered", "fallback"
REQUEST_OUTCOMES = (ANSWERED, FALLBACK)


@dataclasses.dataclass
class Loaded:
    """One batch run's index, open."""
    run: str
    version: int
    scored_at: float
    keys: int
    connection: sqlite3.Connection


@dataclasses.dataclass
class Outcome:
    """What the lookup made of a request: the answer body (None: go online), the body to log and
    to forward (the rows without the key column) and the version that computed the answer."""
    answer: bytes | None
    body: bytes
    version: int | None = None


def key_text(value) -> str | None:
    """A key sent in a request as the batch run wrote it (components/batch_rows.py `keys_of`)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value) if isinstance(value, (str, int)) else None


def open_index(path: str) -> tuple[sqlite3.Connection, dict]:
    """A read-only connection to an index and its meta table."""
    connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    meta = {k: json.loads(v) for k, v in connection.execute("SELECT name, value FROM meta")}
    return connection, meta


class Lookup:
    """The sidecar's view of the latest batch run: `reload()` in a worker thread, `outcome()` on
    the event loop."""

    def __init__(self, repository: str, model_name: str, params: BatchParams, metrics,
                 wall_clock: Callable[[], float]):
        self.params, self.metrics, self.wall_clock = params, metrics, wall_clock
        self.root = batch_runs.root(repository, model_name, params.output_root)
        self.loaded: Loaded | None = None
        self._retired: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._needle = json.dumps(params.key_column).encode() if params.key_column else b""
        metrics.lookup_age.set_function(self.age)
        metrics.lookup_keys.set_function(lambda: self.loaded.keys if self.loaded else 0)
        metrics.lookup_version.set_function(lambda: self.loaded.version if self.loaded else float("nan"))

    @property
    def enabled(self) -> bool:
        return bool(self.params.key_column)

    def age(self) -> float:
        loaded = self.loaded
        return max(0.0, self.wall_clock() - loaded.scored_at) if loaded else float("nan")

    # --- loading (worker thread) -------------------------------------------------------------
    def reload(self) -> bool:
        """Open the run LATEST.json names when it is not the one open; True when it changed."""
        if not self.enabled:
            return False
        latest = batch_runs.read_latest(self.root)
        if latest is None or not latest.get("lookup") or (self.loaded and self.loaded.run == latest["run"]):
            return False
        if latest.get("key_column") != self.params.key_column:
            log.warning("batch run %s is keyed by %r, not batch.key_column %r: not loaded", latest["run"],
                        latest.get("key_column"), self.params.key_column)
            return False
        source = storage.join(batch_runs.run_dir(self.root, latest["run"]), names.LOOKUP_INDEX)
        try:
            connection, meta = open_index(self._local(source, latest["run"]))
            keys = connection.execute("SELECT count(*) FROM answers").fetchone()[0]
        except (OSError, sqlite3.Error, ValueError) as error:
            self.metrics.lookup_loads["failed"].inc()
            raise RuntimeError(f"the lookup index {source} cannot be opened: {error}") from error
        loaded = Loaded(latest["run"], int(meta["version"]), float(meta["scored_at"]), int(keys), connection)
        with self._lock:
            if self.loaded is not None:
                self._retired.append(self.loaded.connection)   # closed on the event loop, which may be using it
            self.loaded = loaded
        self.metrics.lookup_loads["loaded"].inc()
        log.info("lookup: batch run %s loaded (version %d, %d keys)", loaded.run, loaded.version, loaded.keys)
        return True

    def try_reload(self) -> None:
        """`reload`, with a failure logged rather than raised (at start-up: the sidecar serves
        online answers meanwhile, and the periodic reload tries again)."""
        try:
            self.reload()
        except (RuntimeError, OSError) as error:
            log.error("lookup: %s", error)

    def _local(self, source: str, run: str) -> str:
        """The index as a local file: itself when local, else a copy in batch.local_dir (older copies go)."""
        if not storage.is_remote(source):
            return source
        os.makedirs(self.params.local_dir, exist_ok=True)
        target = os.path.join(self.params.local_dir, f"{run}.sqlite")
        if not os.path.exists(target):
            staging = target + ".tmp"
            storage.copy_file(source, staging)
            os.replace(staging, target)
        for name in os.listdir(self.params.local_dir):
            if name.endswith(".sqlite") and name != os.path.basename(target):
                os.unlink(os.path.join(self.params.local_dir, name))   # an open file stays readable until closed
        return target

    # --- answering (event loop) --------------------------------------------------------------
    def outcome(self, body: bytes, served_version: int | None) -> Outcome | None:
        """None when the request does not mention the key column (it is proxied untouched)."""
        if not self.enabled or self._needle not in body:
            return None
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None   # TF Serving will say what is wrong with it
        rows = document.get("instances") if isinstance(document, dict) else None
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            return None
        key_column = self.params.key_column
        keys = [key_text(row.pop(key_column, None)) for row in rows]
        stripped = json.dumps(document).encode()
        self._close_retired()
        loaded = self.loaded
        if len(keys) > MAX_KEYS:
            return self._fallback(stripped)
        answers = self._find(loaded, keys) if loaded is not None else {}
        rows_by = self.metrics.lookup_rows
        found = sum(1 for k in keys if k in answers)
        if found < len(keys) or loaded is None:
            rows_by[HIT].inc(found)
            rows_by[MISS].inc(len(keys) - found)
            return self._fallback(stripped)
        if self.age() > self.params.max_age_s:
            rows_by[STALE].inc(len(keys))
            return self._fallback(stripped)
        if self.params.require_served_version and loaded.version != served_version:
            rows_by[OTHER_VERSION].inc(len(keys))
            return self._fallback(stripped)
        rows_by[HIT].inc(len(keys))
        self.metrics.lookup_requests[ANSWERED].inc()
        answer = b'{"predictions": [' + ", ".join(answers[k] for k in keys).encode() + b"]}"
        return Outcome(answer, stripped, loaded.version)

    def _fallback(self, stripped: bytes) -> Outcome:
        self.metrics.lookup_requests[FALLBACK].inc()
        return Outcome(None, stripped)

    def _find(self, loaded: Loaded, keys: list[str | None]) -> dict[str, str]:
        wanted = sorted({k for k in keys if k is not None})
        found: dict[str, str] = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start:start + CHUNK]
            query = f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(loaded.connection.execute(query, chunk).fetchall())
        return found

    def _close_retired(self) -> None:
        if self._retired:
            with self._lock:
                retired, self._retired = self._retired, []
            for connection in retired:
                connection.close()

    def close(self) -> None:
        self._close_retired()
        if self.loaded is not None:
            self.loaded.connection.close()
            self.loaded = None
