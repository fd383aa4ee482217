"""Ground truth joined to logged predictions by request id, and live accuracy over the last N labels.

Accuracy means: binary, score >= 0.5 equals the 0/1 label; multiclass, argmax of `probabilities`
equals the class index. Regression has no accuracy: feedback is counted, the gauge is left unset.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque

from flywheel import names


class UnknownRequest(KeyError):
    pass


class FeedbackStore:
    def __init__(self, remember: int = 100_000, window: int = 1000):
        self.remember = remember
        self._predictions: OrderedDict[str, tuple[str, list]] = OrderedDict()
        self._correct: deque[int] = deque(maxlen=window)
        self._lock = threading.Lock()

    def remember_prediction(self, request_id: str, task: str, predictions: list) -> None:
        with self._lock:
            self._predictions[request_id] = (task, predictions)
            while len(self._predictions) > self.remember:
                self._predictions.popitem(last=False)

    def join(self, request_id: str, labels: list) -> tuple[int, float | None]:
        """Labels for the rows of one request -> (rows joined, live accuracy or None)."""
        with self._lock:
            found = self._predictions.get(request_id)
        if found is None:
            raise UnknownRequest(request_id)
        task, predictions = found
        if len(labels) != len(predictions):
            raise ValueError(f"request {request_id} had {len(predictions)} row(s); got {len(labels)} label(s)")
        if task != names.REGRESSION:
            with self._lock:
                for prediction, label in zip(predictions, labels):
                    self._correct.append(int(_predicted_class(task, prediction) == _as_class(label)))
        return len(labels), self.accuracy()

    def accuracy(self) -> float | None:
        with self._lock:
            return sum(self._correct) / len(self._correct) if self._correct else None


def _as_class(label) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, float)) or label != int(label):
        raise ValueError(f"label must be a class index (0/1 for binary), got {label!r}")
    return int(label)


def _predicted_class(task: str, prediction) -> int:
    if task == names.MULTICLASS:
        probabilities = prediction[names.OUTPUT_PROBABILITIES] if isinstance(prediction, dict) else prediction
        return max(range(len(probabilities)), key=probabilities.__getitem__)
    score = prediction[names.OUTPUT_SCORE] if isinstance(prediction, dict) else prediction
    return int(score >= 0.5)
