"""Everything the sidecar does with a prediction after the response has gone back: one thread,
fed by a bounded queue, working in batches.

Per request record: parse the request rows and the response predictions, count schema anomalies,
add the rows and scores to the drift window of the served version, remember predictions for
feedback, redact PII and write one JSON line. `submit()` never blocks: when the queue is full the
record is dropped and counted (flywheel_prediction_log_records_total{outcome="dropped"}), so a slow
disk costs log records, never latency or memory. Under that overload drift and schema counts see
only the records that got through (a sample), which is stated in the README.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from flywheel import names
from monitoring.feedback import FeedbackStore
from monitoring.metrics import SidecarMetrics
from monitoring.prediction_log import LogWriter, redact
from monitoring.schema_check import check_rows
from monitoring.window import DriftWindow

log = logging.getLogger(__name__)
BATCH = 64  # records per pass (~30 us each): bounded work between checks of the stop flag


@dataclass(slots=True)
class Record:
    time: float
    request_id: str
    version: int | None           # explicit /versions/N, else None (the served version)
    request_body: bytes
    status: int
    response_body: bytes
    latency_s: float


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


def predictions_from_response(response: dict) -> list:
    predictions = response.get("predictions", response.get("outputs"))
    if isinstance(predictions, dict):  # columnar, several outputs
        score = predictions.get(names.OUTPUT_SCORE, [])
        return list(score) if isinstance(score, list) else []
    return predictions if isinstance(predictions, list) else []


def score_of(prediction) -> float | None:
    if isinstance(prediction, dict):
        prediction = prediction.get(names.OUTPUT_SCORE)
    if isinstance(prediction, list) and len(prediction) == 1:
        prediction = prediction[0]
    return float(prediction) if isinstance(prediction, (int, float)) and not isinstance(prediction, bool) else None


class Observer:
    def __init__(self, model: str, metrics: SidecarMetrics, writer: LogWriter, feedback: FeedbackStore,
                 current: Callable[[], tuple[int | None, DriftWindow | None]], queue_size: int = 10000,
                 pii_fields: frozenset[str] = frozenset()):
        self.model = model
        self.metrics = metrics
        self.writer = writer
        self.feedback = feedback
        self.current = current
        self.pii_fields = pii_fields
        self.queue: queue.Queue[Record] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-observer", daemon=True)
        self._dropped = metrics.log_records["dropped"]
        metrics.log_queue_depth.set_function(self.queue.qsize)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self.writer.close()

    def submit(self, record: Record) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self._dropped.inc()

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every submitted record is processed (tests, shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self.queue.join(), done.set()), daemon=True).start()
        return done.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set() or not self.queue.empty():
            try:
                batch = [self.queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._process(batch)
            except Exception:  # never let one odd record stop the observer
                log.exception("observer batch failed")
                self._dropped.inc(len(batch))
            finally:
                for _ in batch:
                    self.queue.task_done()

    def _process(self, batch: list[Record]) -> None:
        served_version, window = self.current()
        baseline = window.baseline if window is not None else None
        lines, anomalies = [], {}
        window_rows: list[dict] = []
        window_scores: list[float] = []
        for record in batch:
            try:
                request = json.loads(record.request_body)
            except (ValueError, UnicodeDecodeError):
                request = None
            rows = rows_from_request(request) if isinstance(request, dict) else []
            predictions = []
            if record.status == 200:
                try:
                    predictions = predictions_from_response(json.loads(record.response_body))
                except (ValueError, UnicodeDecodeError):
                    predictions = []
            version = record.version if record.version is not None else served_version
            if baseline is not None and rows:
                found, clean = check_rows(rows, baseline.features)
                for key, count in found.items():
                    anomalies[key] = anomalies.get(key, 0) + count
                if record.status == 200 and version == baseline.version:
                    window_rows += clean
                    window_scores += [s for s in map(score_of, predictions) if s is not None]
            if predictions:
                task = baseline.task if baseline is not None else names.BINARY
                self.feedback.remember_prediction(record.request_id, task, predictions)
            lines.append(json.dumps({
                "time": record.time, "request_id": record.request_id, "model": self.model, "version": version,
                "status": record.status, "latency_ms": round(record.latency_s * 1000, 3),
                "features": [redact(r, self.pii_fields) for r in rows], "predictions": predictions,
            }, separators=(",", ":"), default=str))
        if window is not None and (window_rows or window_scores):
            window.add(window_rows, window_scores)  # one lock round per batch
        for (feature, kind), count in anomalies.items():
            self.metrics.schema_anomalies.labels(self.model, feature, kind).inc(count)
        if self.writer.write(lines):
            self.metrics.log_records["written"].inc(len(lines))
        else:
            self._dropped.inc(len(lines))
