"""Serving logs for the span and label tests, written with the log format's own writers
(flywheel/serving_logs.py for prediction segments, monitoring.feedback.FeedbackLog for feedback)."""
from __future__ import annotations

import time

from flywheel import serving_logs, storage
from monitoring.feedback import FeedbackLog

MODEL = "taxi_tips"


def prediction(request_id: str, rows: list[dict], scores: list[float], t: float, version: int = 1) -> dict:
    return {"format": serving_logs.FORMAT, "kind": serving_logs.PREDICTION, "time": t, "request_id": request_id,
            "model": MODEL, "version": version, "status": 200, "latency_ms": 1.0, "pod": "pod-a", "rows": len(rows),
            "features": rows, "predictions": [{"score": s} for s in scores]}


def write_segment(root: str, records: list[dict], seq: int, torn: bytes = b"", instance: str = "pod-a-1") -> str:
    """One closed segment; `torn` is appended as a last line cut off mid-write."""
    data = b"".join(serving_logs.encode(r) + b"\n" for r in records) + torn
    path = serving_logs.segment_path(root, records[0]["time"] if records else time.time(), instance, seq)
    storage.write_bytes(path, serving_logs.gzip_bytes(data))
    return path


def write_feedback(root: str, answers: list[tuple[str, list]], t: float, instance: str = "pod-b-1") -> None:
    log = FeedbackLog(root, instance, clock=lambda: t)
    log.append([{"format": serving_logs.FORMAT, "kind": serving_logs.FEEDBACK, "time": t, "request_id": rid,
                 "model": MODEL, "pod": instance, "feedback_id": log.new_id(), "labels": labels}
                for rid, labels in answers])
