"""Ground truth for served predictions, correct across replicas.

A client posts labels for a request id to any replica. The replica checks them against the
served model's label domain (the label vocabulary train recorded in the model metadata),
appends the feedback durably to the fleet's shared feedback log (flywheel/serving_logs.py)
and only then answers. The replica that served the request joins the labels to its
predictions: at once when that is the replica that was posted to, otherwise when it next reads
the shared log (every `feedback_poll_s`). First answer wins: a request id answered before is
refused (409) by a replica that knows it, and any later record is a duplicate to every reader.

Live accuracy: binary, score >= 0.5 is class 1 (the second label of the sorted vocabulary);
multiclass, the `score` output (the predicted class index); regression has no accuracy, its
feedback is counted only.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import threading
import time
from array import array
from collections import OrderedDict, deque
from typing import Callable

from flywheel import names, serving_logs, storage
from monitoring.segments import write_all

log = logging.getLogger(__name__)
_ENTRY_OVERHEAD = 200        # bytes a remembered prediction costs beyond its key and classes (dict slot, tuple)
MAX_REQUEST_ID = 256         # characters


class FeedbackError(ValueError):
    """A feedback body that cannot be accepted: the message says why (answered with 400)."""


class LabelDomain:
    """The model's labels as the training file holds them, and their class indices."""

    def __init__(self, task: str, vocabulary: list):
        self.task = task
        self.vocabulary = list(vocabulary)
        self.numeric = bool(self.vocabulary) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     for v in self.vocabulary)
        self._index: dict = {}
        for i, value in enumerate(self.vocabulary):
            self._index.setdefault((type(value) is bool, value), i)

    @classmethod
    def from_metadata(cls, metadata: dict) -> "LabelDomain":
        return cls(metadata.get("task", names.BINARY), metadata.get("label_vocabulary") or [])

    def _shown(self) -> str:
        shown = ", ".join(map(repr, self.vocabulary[:10]))
        return f"[{shown}{', ...' if len(self.vocabulary) > 10 else ''}]"

    def value(self, label) -> tuple[object, int | None]:
        """(the label as the training file holds it, its class index) for one label of a client."""
        if self.task == names.REGRESSION:
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
                raise FeedbackError(f"label {label!r} is not a finite number (the model is a regression)")
            return float(label), None
        if isinstance(label, float) and not math.isfinite(label):
            raise FeedbackError(f"label {label!r} is not finite; the model's labels are {self._shown()}")
        if isinstance(label, (str, bool, int, float)):
            found = self._index.get((type(label) is bool, label))
            if found is not None:
                return self.vocabulary[found], found
            # A class index is accepted where it cannot be mistaken for a label value.
            if (not self.numeric and not isinstance(label, bool) and isinstance(label, int)
                    and 0 <= label < len(self.vocabulary)):
                return self.vocabulary[label], label
        raise FeedbackError(f"label {label!r} is not one of the model's labels {self._shown()}"
                            + ("" if self.numeric else " (or a class index 0-" f"{len(self.vocabulary) - 1})"))

    def index(self, label_index) -> tuple[object, int]:
        if (isinstance(label_index, bool) or not isinstance(label_index, int)
                or not 0 <= label_index < len(self.vocabulary)):
            raise FeedbackError(f"label_index {label_index!r} is not a class index 0-{len(self.vocabulary) - 1}"
                                if self.vocabulary else "the model is a regression: it has no class indices")
        return self.vocabulary[label_index], label_index


def parse_body(payload, domain: LabelDomain) -> tuple[str, list, list]:
    """A feedback body -> (request_id, label values, class indices or Nones). Raises FeedbackError."""
    usage = ('expected {"request_id": str, "label": x} or {"request_id": str, "labels": [x, ...]} '
             '(or "label_index" / "label_indices")')
    if not isinstance(payload, dict):
        raise FeedbackError(usage)
    unknown = sorted(set(payload) - {"request_id", "label", "labels", "label_index", "label_indices"})
    if unknown:
        raise FeedbackError(f"unknown key(s) {unknown}: {usage}")
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID:
        raise FeedbackError(f"request_id must be a non-empty string of at most {MAX_REQUEST_ID} characters")
    given = [k for k in ("label", "labels", "label_index", "label_indices") if k in payload]
    if len(given) != 1:
        raise FeedbackError(f"give exactly one of label, labels, label_index, label_indices; {usage}")
    key = given[0]
    values = payload[key] if key.endswith("s") else [payload[key]]
    if not isinstance(values, list) or not values:
        raise FeedbackError(f"{key} must be a non-empty list")
    convert = domain.index if key.startswith("label_ind") else domain.value
    pairs = [convert(v) for v in values]
    return request_id, [p[0] for p in pairs], [p[1] for p in pairs]


def predicted_classes(task: str, predictions: list) -> array | None:
    """Class index per row from TF Serving's predictions (None for regression, or when the
    predictions do not have the shape the task implies)."""
    if task == names.REGRESSION:
        return None
    out = array("H")
    for prediction in predictions:
        if isinstance(prediction, dict):
            score = prediction.get(names.OUTPUT_SCORE)
        elif isinstance(prediction, list) and len(prediction) == 1:
            score = prediction[0]
        else:
            score = prediction
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            return None
        if task == names.MULTICLASS:
            if not 0 <= score < 65535:
                return None
            out.append(int(score))
        else:
            out.append(int(score >= 0.5))
    return out


class FeedbackState:
    """Per pod: predictions kept for joining (bounded in entries and bytes), request ids already
    answered, feedback waiting for its prediction, live accuracy and cumulative counts."""

    def __init__(self, remember: int, memory_bytes: int, window: int, pending_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.remember = remember
        self.memory_bytes = memory_bytes
        self.pending_s = pending_s
        self.clock = clock
        self._predictions: OrderedDict[str, tuple[int, array | None]] = OrderedDict()   # id -> (rows, classes)
        self._bytes = 0
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._pending: OrderedDict[str, tuple[float, list]] = OrderedDict()             # id -> (deadline, indices)
        self._correct: deque[int] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.counts = {"joined_rows": 0, "scored_rows": 0, "correct_rows": 0, "duplicates": 0, "row_mismatch": 0,
                       "expired": 0}

    def _size(self, request_id: str, classes: array | None) -> int:
        return len(request_id) + (classes.itemsize * len(classes) if classes is not None else 0) + _ENTRY_OVERHEAD

    def remember_prediction(self, request_id: str, rows: int, classes: array | None) -> None:
        with self._lock:
            if request_id in self._predictions:
                self._bytes -= self._size(request_id, self._predictions.pop(request_id)[1])
            self._predictions[request_id] = (rows, classes)
            self._bytes += self._size(request_id, classes)
            while self._predictions and (len(self._predictions) > self.remember or self._bytes > self.memory_bytes):
                old_id, (_, old) = self._predictions.popitem(last=False)
                self._bytes -= self._size(old_id, old)
            waiting = self._pending.pop(request_id, None)
            if waiting is not None:
                self._join_locked(request_id, waiting[1])

    def memory(self) -> tuple[int, int]:
        with self._lock:
            return len(self._predictions), self._bytes

    def holds(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._predictions

    def rows_of(self, request_id: str) -> int | None:
        with self._lock:
            found = self._predictions.get(request_id)
            return None if found is None else found[0]

    def claim(self, request_id: str) -> bool:
        """Mark a request id answered; False if it already was (a duplicate)."""
        with self._lock:
            if request_id in self._answered:
                self.counts["duplicates"] += 1
                return False
            self._answered[request_id] = None
            while len(self._answered) > self.remember:
                self._answered.popitem(last=False)
            return True

    def unclaim(self, request_id: str) -> None:
        with self._lock:
            self._answered.pop(request_id, None)

    def join(self, request_id: str, indices: list) -> int:
        """Join labels to a prediction held here, or keep them waiting for it; rows joined."""
        with self._lock:
            if request_id in self._predictions:
                return self._join_locked(request_id, indices)
            self._pending[request_id] = (self.clock() + self.pending_s, indices)
            self._expire_pending_locked()
            return 0

    def _join_locked(self, request_id: str, indices: list) -> int:
        rows, classes = self._predictions[request_id]
        if rows != len(indices):
            self.counts["row_mismatch"] += 1
            return 0
        self.counts["joined_rows"] += rows
        if classes is not None and len(classes) == rows:
            for predicted, label in zip(classes, indices):
                hit = int(label is not None and predicted == label)
                self._correct.append(hit)
                self.counts["correct_rows"] += hit
            self.counts["scored_rows"] += rows
        return rows

    def _expire_pending_locked(self) -> None:
        now = self.clock()
        while self._pending and (next(iter(self._pending.values()))[0] < now or len(self._pending) > self.remember):
            self._pending.popitem(last=False)
            self.counts["expired"] += 1

    def from_fleet(self, record: dict, domain: LabelDomain) -> None:
        """A feedback record another replica accepted: join it if the prediction is here."""
        request_id, labels = record.get("request_id"), record.get("labels")
        if not isinstance(request_id, str) or not isinstance(labels, list):
            return
        try:
            indices = [domain.value(v)[1] for v in labels]
        except FeedbackError:
            return
        with self._lock:
            duplicate = request_id in self._answered
            if not duplicate:
                self._answered[request_id] = None
                while len(self._answered) > self.remember:
                    self._answered.popitem(last=False)
            here = request_id in self._predictions
            if duplicate:
                if here:  # only the replica that served it counts the duplicate, so the fleet counts it once
                    self.counts["duplicates"] += 1
                return
            if here:
                self._join_locked(request_id, indices)
            else:
                self._pending[request_id] = (self.clock() + self.pending_s, indices)
                self._expire_pending_locked()

    def accuracy(self) -> float | None:
        with self._lock:
            return sum(self._correct) / len(self._correct) if self._correct else None


class FeedbackLog:
    """The fleet's feedback log under `<destination>/feedback/`: this instance appends (durably)
    and reads what the other instances appended."""

    def __init__(self, destination: str, instance: str, clock: Callable[[], float] = time.time):
        self.destination = destination
        self.instance = instance
        self.clock = clock
        self.remote = storage.is_remote(destination)
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._file: tuple[str, str] | None = None      # (day, path) of the file this instance appends to
        self._offsets: dict[str, int] = {}             # other instances' files: bytes read so far
        self._lock = threading.Lock()

    def new_id(self) -> str:
        return f"{self.instance}-{next(self._ids)}"

    def append(self, records: list[dict]) -> None:
        """Write records and make them durable (fsync, or a closed object); raises OSError."""
        if not records:
            return
        data = b"".join(serving_logs.encode(r) + b"\n" for r in records)
        now = self.clock()
        with self._lock:
            if self.remote:  # objects cannot be appended to: one object per commit
                storage.write_bytes(serving_logs.feedback_path(self.destination, now, self.instance, next(self._seq)),
                                    data)
                return
            today = serving_logs.day(now)
            if self._file is None or self._file[0] != today:
                self._file = (today, serving_logs.feedback_path(self.destination, now, self.instance, next(self._seq)))
            os.makedirs(os.path.dirname(self._file[1]), exist_ok=True)   # also after the volume came back
            fd = os.open(self._file[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = os.fstat(fd).st_size
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)  # no torn line for readers
                    raise
            finally:
                os.close(fd)

    def read_new(self) -> list[dict]:
        """Records other instances appended since the last call (today's and yesterday's files)."""
        now = self.clock()
        records: list[dict] = []
        mine = f"{self.instance}-"
        for date in sorted({serving_logs.day(now - 86400), serving_logs.day(now)}):
            directory = serving_logs.day_dir(self.destination, serving_logs.FEEDBACK_DIR, date)
            for name in sorted(storage.listdir(directory)):
                if name.startswith(mine) or name.startswith(".") or not name.endswith(serving_logs.FEEDBACK_SUFFIX):
                    continue
                path = storage.join(directory, name)
                offset = self._offsets.get(path, 0)
                if self.remote:
                    if path in self._offsets:
                        continue  # objects are written whole, once
                    data = storage.read_bytes(path)
                else:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        data = f.read()
                end = data.rfind(b"\n") + 1   # a line still being written is read next time
                self._offsets[path] = offset + end
                found, _ = serving_logs.parse_records(data[:end])
                records += found
        return records


class GroupCommit:
    """Feedback handlers wait for their record to be durable; records that arrive while a write
    is in progress are written together by the next one (one fsync for many clients)."""

    def __init__(self, feedback_log: FeedbackLog):
        self.log = feedback_log
        self.pending: list[tuple[dict, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    async def write(self, record: dict) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((record, future))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await loop.run_in_executor(None, self.log.append, [r for r, _ in batch])
            except Exception as error:  # the records were not made durable: every waiter learns it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, OSError) else OSError(str(error)))
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
