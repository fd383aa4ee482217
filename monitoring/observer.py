"""Everything the sidecar does with a prediction after the response has gone back: one thread,
fed by a queue bounded in records and bytes, working in batches.

The request path only appends to the queue (no lock handed over, no thread woken): the observer
wakes every `linger_s`, takes everything queued and works through it, so its cost per request
stays flat at any rate instead of paying a wake-up, a batch set-up and a write per request.

Per record: an accepted request (status 200) is parsed, its rows checked against the SERVING
schema (counted), a random sample of at most `window_rows_per_request` of them set aside for
the drift window of the version that answered, its predictions remembered for feedback, and one
JSON line written with the rows (PII redacted) and predictions. Rows set aside reach the window
in chunks of an eighth of it, or after DRIFT_FLUSH_S: binning costs about as much per chunk as
per row, so a chunk per 50 ms batch would cost more than the rows themselves at moderate rates. A rejected request costs O(1):
its line holds the body's size and SHA-256, and nothing of it reaches drift or schema counts.
A record that fails in any way is written in that short form and counted, alone: it never
takes its batch with it. When the queue is full a record is dropped and counted, so a slow disk
costs log records, never latency or memory.
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

from flywheel import names, serving_logs
from flywheel.redaction import Redactor
from monitoring import baseline as baseline_io
from monitoring.baseline import PREDICTIONS, Baseline
from monitoring.feedback import FeedbackState, predicted_classes
from monitoring.metrics import SidecarMetrics
from monitoring.schema_check import check_rows
from monitoring.segments import SegmentWriter
from monitoring.window import DriftWindow

log = logging.getLogger(__name__)
FLUSH_BYTES = 1 << 20      # lines are written whenever this much is ready, so a batch never piles up in memory
MAX_BATCH = 1024           # records per pass; the drift window takes one chunk per pass
WARN_EVERY_S = 60.0
DRIFT_FLUSH_S = 1.0        # rows set aside for the drift window wait at most this long


@dataclass(slots=True)
class Record:
    time: float
    request_id: str
    version: int | None           # the version that answered; None when not known
    request_body: bytes
    status: int
    response_body: bytes
    latency_s: float

    @property
    def size(self) -> int:
        return len(self.request_body) + len(self.response_body)


def rows_from_request(request: dict) -> list[dict]:
    """Rows of a TF Serving predict request, row ("instances") or columnar ("inputs") format."""
    if "instances" in request:
        rows = request["instances"]
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    columns = request.get("inputs")
    if isinstance(columns, dict) and columns and all(isinstance(v, list) for v in columns.values()):
        length = min(len(v) for v in columns.values())
        return [{k: v[i] for k, v in columns.items()} for i in range(length)]
    return []


def predictions_from_response(response) -> list:
    if not isinstance(response, dict):
        return []
    predictions = response.get("predictions", response.get("outputs"))
    if isinstance(predictions, dict):  # columnar, several outputs
        score = predictions.get(names.OUTPUT_SCORE, [])
        return list(score) if isinstance(score, list) else []
    return predictions if isinstance(predictions, list) else []


def has_null(value, depth: int = 0) -> bool:
    """Whether an answer holds a null: the development model server answers a NaN or infinite
    prediction as null (strict JSON has neither), so the log line is flagged as TF Serving's
    literal NaN would be."""
    if value is None:
        return True
    if depth >= serving_logs.MAX_DEPTH:
        return False
    if isinstance(value, list):
        return any(has_null(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(has_null(v, depth + 1) for v in value.values())
    return False


def score_of(prediction) -> float | None:
    if isinstance(prediction, dict):
        prediction = prediction.get(names.OUTPUT_SCORE)
    if isinstance(prediction, list) and len(prediction) == 1:
        prediction = prediction[0]
    return float(prediction) if isinstance(prediction, (int, float)) and not isinstance(prediction, bool) else None


class Observer:
    def __init__(self, model: str, instance: str, metrics: SidecarMetrics, writer: SegmentWriter,
                 feedback: FeedbackState, current: Callable[[], tuple[Baseline | None, DriftWindow | None]],
                 redactor: Redactor, queue_size: int, queue_bytes: int, linger_s: float,
                 rows_per_request: int, seed: int | None = None):
        self.model = model
        self.instance = instance
        self.metrics = metrics
        self.writer = writer
        self.feedback = feedback
        self.current = current
        self.redactor = redactor
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.linger_s = linger_s
        self.rows_per_request = rows_per_request
        self.random = random.Random(seed)
        self._queue: deque[Record] = deque()
        self._lock = threading.Lock()          # guards the two counters below
        self._records = 0
        self._bytes = 0
        self._submitted = 0
        self._done = 0
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._warned = -WARN_EVERY_S
        # Rows (sampled) and their scores set aside for `_drift_window`, since `_drift_since`.
        self._drift_window: DriftWindow | None = None
        self._drift_rows: list[dict] = []
        self._drift_scores: list = []
        self._drift_since = 0.0
        self._flush_requested = 0     # drain(): add what is set aside once this many records are done
        self._flushed = 0             # records done when the rows set aside last reached the window
        self._thread = threading.Thread(target=self._run, name="prediction-observer", daemon=True)
        self._dropped_metric = metrics.log_records["dropped"]
        self._written_metric = metrics.log_records["written"]
        self.written = 0
        self.dropped = 0
        metrics.log_queue_depth.set_function(lambda: self._records)
        metrics.log_queue_bytes.set_function(lambda: self._bytes)

    # --- request path (event loop) ------------------------------------------------------------
    def submit(self, record: Record) -> bool:
        size = record.size
        with self._lock:
            if self._records >= self.queue_size or self._bytes + size > self.queue_bytes:
                full = True
            else:
                full = False
                self._records += 1
                self._bytes += size
                self._submitted += 1
        if full:
            self._drop(1)
            return False
        self._queue.append(record)
        return True

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> int:
        """Work through what is queued for up to `timeout_s`; returns the records left and dropped."""
        self._deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._thread.join(timeout_s + 5)
        left = 0
        while self._queue:
            self._release(self._queue.popleft())
            left += 1
        if left:
            self._drop(left)
        return left

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every record submitted so far is processed and its rows are in the drift
        window (tests)."""
        target = self._flush_requested = self._submitted
        deadline = time.monotonic() + timeout_s
        while self._flushed < target and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._flushed >= target

    def _drop(self, n: int) -> None:
        with self._lock:
            self.dropped += n
        self._dropped_metric.inc(n)

    def _release(self, record: Record) -> None:
        with self._lock:
            self._records -= 1
            self._bytes -= record.size

    # --- the observer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.linger_s)
            while self._queue and time.monotonic() < self._deadline:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                try:
                    self._process(batch)
                except Exception:  # never let anything stop the observer; records already counted
                    log.exception("observer batch failed")
                finally:
                    for record in batch:    # what a failed batch left unreleased
                        if record is not None:
                            self._release(record)
                    self._done += len(batch)
            if (self._drift_rows and time.monotonic() - self._drift_since >= DRIFT_FLUSH_S) or stopping \
                    or (self._flush_requested and self._done >= self._flush_requested):
                self.flush_drift()
            if stopping:
                return

    def _process(self, batch: list[Record]) -> None:
        baseline, window = self.current()
        if window is not self._drift_window:   # a new version: its rows go to its own window
            self.flush_drift()
            self._drift_window = window
        drift_rows, drift_scores = self._drift_rows, self._drift_scores
        had = len(drift_rows)
        anomalies: Counter = Counter()
        lines: list[bytes] = []
        pending = 0
        for i, record in enumerate(batch):
            try:
                line = self._one(record, baseline, window, anomalies, drift_rows, drift_scores)
            except Exception as error:  # poison input stays in its own record
                self.metrics.observer_errors.inc()
                now = time.monotonic()
                if now - self._warned > WARN_EVERY_S:   # a flood of odd input must not flood the log
                    self._warned = now
                    log.warning("record %s kept in short form: %s: %s (further ones for %.0f s only counted)",
                                record.request_id, type(error).__name__, error, WARN_EVERY_S)
                line = self._short_line(record, [serving_logs.UNPARSED])
            lines.append(line)
            pending += len(line)
            batch[i] = None
            self._release(record)
            if pending >= FLUSH_BYTES:
                self._write(lines, record.time)
                lines, pending = [], 0
        if not had and drift_rows:
            self._drift_since = time.monotonic()
        if window is not None and len(drift_rows) >= max(1, window.size // 8):
            self.flush_drift()
        for (feature, kind), count in anomalies.items():
            self.metrics.schema_anomaly(feature, kind).inc(count)
        self._write(lines, time.time())

    def flush_drift(self) -> None:
        """The rows set aside, into their window (observer thread, or a test's own)."""
        window, rows, scores = self._drift_window, self._drift_rows, self._drift_scores
        done = self._done
        if window is not None and rows:
            columns = {item.column: [row.get(item.column) for row in rows]
                       for item in window.items.values() if item.column != PREDICTIONS}
            columns[PREDICTIONS] = scores
            window.add(len(rows), columns)
        self._drift_rows, self._drift_scores = [], []
        self._flushed = done

    def _write(self, lines: list[bytes], first_time: float) -> None:
        if not lines:
            return
        if self.writer.write(lines, first_time):
            self.written += len(lines)
            self._written_metric.inc(len(lines))
        else:
            self._drop(len(lines))

    def _head(self, record: Record) -> dict:
        return {"format": serving_logs.FORMAT, "kind": serving_logs.PREDICTION, "time": record.time,
                "request_id": record.request_id, "model": self.model, "version": record.version,
                "status": record.status, "latency_ms": round(record.latency_s * 1000, 3), "pod": self.instance}

    def _short_line(self, record: Record, flags: list[str] = ()) -> bytes:
        line = {**self._head(record), "rows": 0, "request_bytes": len(record.request_body),
                "request_sha256": hashlib.sha256(record.request_body).hexdigest()}
        if flags:
            line["flags"] = list(flags)
        return serving_logs.encode(line)

    def _one(self, record: Record, baseline: Baseline | None, window: DriftWindow | None, anomalies: Counter,
             drift_rows: list[dict], drift_scores: list) -> bytes:
        if record.status != 200:
            return self._short_line(record)
        try:
            request, strict_request = serving_logs.read_json(record.request_body)
            response, strict_response = serving_logs.read_json(record.response_body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return self._short_line(record, [serving_logs.UNPARSED])
        rows = rows_from_request(request) if isinstance(request, dict) else []
        predictions = predictions_from_response(response)
        if baseline is not None:
            rows = baseline_io.rows_as_columns(rows, baseline.key_to_column)
        if baseline is not None and window is not None and record.version == baseline.version and rows:
            n = len(rows)
            keep = (set(self.random.sample(range(n), self.rows_per_request)) if n > self.rows_per_request
                    else None)
            _, kept = check_rows(rows, baseline.features, keep, anomalies)
            indices = sorted(keep) if keep is not None else range(n)
            drift_rows += kept
            drift_scores += [score_of(predictions[i]) if i < len(predictions) else None for i in indices]
        elif baseline is not None and rows:
            check_rows(rows, baseline.features, set(), anomalies)
        if predictions:
            task = baseline.task if baseline is not None else None
            self.feedback.remember_prediction(record.request_id, len(predictions),
                                              predicted_classes(task, predictions) if task else None)
        flags: set = {serving_logs.NON_FINITE} if has_null(predictions) else set()
        line = {**self._head(record), "rows": len(rows),
                "features": self.redactor.rows(rows, flags), "predictions": predictions}
        if flags:
            line["flags"] = sorted(flags)
        return serving_logs.encode(line, strict=strict_request and strict_response)
