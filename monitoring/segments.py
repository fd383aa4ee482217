"""The prediction log on the pod's disk, in segments that are closed, compressed and shipped.

`SegmentWriter` appends JSON lines (flywheel/serving_logs.py) to the open segment
`<log_dir>/<instance>-<seq>.jsonl`, a batch at a time with one os.write loop on an O_APPEND
descriptor; a batch that fails part-way (disk full) is truncated away, so no reader sees a torn
line, and reported as dropped. A segment closes when it reaches `segment_max_bytes` or
`segment_max_age_s`, or when the UTC day changes (then it is renamed `.closed`). A file left open by a process that died is
closed by the next one (its torn tail cut) before anything else is written.

`Shipper` gzips each closed segment and writes it through flywheel.storage to
`<destination>/predictions/date=<day of its first record>/<instance>-<seq>.jsonl.gz` (a local
path, a mounted volume, gs:// or s3://), then deletes the local file. A failure leaves the file
for the next try after `ship_retry_s`; when the unshipped files exceed `local_log_max_bytes`
the oldest are deleted and their records counted as lost.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flywheel import serving_logs, storage

log = logging.getLogger(__name__)
OPEN_SUFFIX = ".jsonl"
CLOSED_SUFFIX = ".jsonl.closed"
SEQ_FILE = "next_seq"
REPEAT_LOG_S = 300.0   # a failure that repeats is counted every time and logged this often


@dataclass
class ClosedSegment:
    path: Path
    first_time: float
    records: int
    size: int
    closed_at: float


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part of them)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _first_record_time(path: Path) -> float:
    with open(path, "rb") as f:
        line = f.readline()
    try:
        return float(json.loads(line)["time"])
    except (ValueError, KeyError, TypeError):
        return os.path.getmtime(path)


def _cut_torn_tail(path: Path) -> int:
    """Cut the bytes after the last newline (a write a crash interrupted); returns bytes cut."""
    size = path.stat().st_size
    if not size:
        return 0
    with open(path, "rb+") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
        if tail.endswith(b"\n"):
            return 0
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
        f.truncate(keep)
        return size - keep


class SegmentWriter:
    def __init__(self, log_dir: str | Path, instance: str, max_bytes: int, max_age_s: float,
                 clock: Callable[[], float] = time.time):
        self.dir = Path(log_dir)
        self.instance = instance
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock
        self.fd: int | None = None
        self.path: Path | None = None
        self.opened_at = 0.0
        self.first_time = 0.0
        self.records = 0
        self.size = 0
        self.repaired_bytes = 0
        self.closed: list[ClosedSegment] = []
        self.lock = threading.Lock()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._close_leftovers()

    # --- sequence numbers survive restarts of the container (the emptyDir does) -----------
    def _next_seq(self) -> int:
        seq_file = self.dir / SEQ_FILE
        try:
            seq = int(seq_file.read_text())
        except (OSError, ValueError):
            seq = 1
        tmp = self.dir / f".{SEQ_FILE}.tmp"
        tmp.write_text(str(seq + 1))
        os.replace(tmp, seq_file)
        return seq

    def _close_leftovers(self) -> None:
        """Segments a previous process left open are closed now; closed ones are queued to ship."""
        for path in sorted(self.dir.glob(f"*{OPEN_SUFFIX}")):
            self.repaired_bytes += _cut_torn_tail(path)
            if path.stat().st_size == 0:
                path.unlink()
                continue
            os.replace(path, path.with_name(path.name[:-len(OPEN_SUFFIX)] + CLOSED_SUFFIX))
        for path in sorted(self.dir.glob(f"*{CLOSED_SUFFIX}")):
            size = path.stat().st_size
            with open(path, "rb") as f:
                records = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            self.closed.append(ClosedSegment(path, _first_record_time(path), records, size, self.clock()))

    def _open(self, first_time: float) -> int:
        self.path = self.dir / f"{self.instance}-{self._next_seq():06d}{OPEN_SUFFIX}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.opened_at, self.first_time, self.records, self.size = self.clock(), first_time, 0, 0
        return self.fd

    def write(self, lines: list[bytes], first_time: float) -> bool:
        """Append lines (each without its newline). True if all were written, False if none were."""
        if not lines:
            return True
        data = b"\n".join(lines) + b"\n"
        with self.lock:
            start = None
            try:
                if self.fd is not None and ((self.size and self.size + len(data) > self.max_bytes)
                                            or serving_logs.day(first_time) != serving_logs.day(self.first_time)):
                    self._close_current()   # full, or a new day: a segment holds one day's records
                fd = self.fd if self.fd is not None else self._open(first_time)
                start = self.size
                write_all(fd, data)
                self.size += len(data)
                self.records += len(lines)
                return True
            except OSError as error:
                log.warning("prediction log write failed: %s", error)
                self._undo_partial(start)
                return False

    def _undo_partial(self, start: int | None) -> None:
        if self.fd is None or start is None:
            return
        try:
            os.ftruncate(self.fd, start)
        except OSError:  # cannot even truncate: give the segment up; reopening cuts its tail
            self._close_current()

    def _close_current(self) -> None:
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None
        if self.records == 0:
            self.path.unlink(missing_ok=True)
            return
        closed = self.path.with_name(self.path.name[:-len(OPEN_SUFFIX)] + CLOSED_SUFFIX)
        os.replace(self.path, closed)
        self.closed.append(ClosedSegment(closed, self.first_time, self.records, self.size, self.clock()))

    def roll_if_due(self) -> None:
        """Close the open segment when it is old enough (called by the shipper)."""
        with self.lock:
            if self.fd is not None and self.clock() - self.opened_at >= self.max_age_s:
                self._close_current()

    def close(self) -> None:
        with self.lock:
            self._close_current()

    def take_closed(self) -> list[ClosedSegment]:
        with self.lock:
            taken, self.closed = self.closed, []
            return taken


class Shipper:
    """Ships closed segments; everything it does is counted in `stats` for the metrics."""

    def __init__(self, writer: SegmentWriter, destination: str, max_local_bytes: int, retry_s: float,
                 clock: Callable[[], float] = time.time):
        self.writer = writer
        self.destination = destination
        self.max_local_bytes = max_local_bytes
        self.retry_s = retry_s
        self.clock = clock
        self.pending: list[ClosedSegment] = []
        self.next_try = 0.0
        self.lock = threading.Lock()          # the pending list and the stats
        self.shipping = threading.Lock()      # one shipping pass at a time
        self.stats = {"shipped": 0, "failed": 0, "lost": 0, "bytes": 0, "lost_records": 0}
        self._logged = -REPEAT_LOG_S

    def oldest_unshipped_age(self) -> float:
        with self.lock:
            oldest = min((s.closed_at for s in self.pending), default=None)
        if self.writer.fd is not None:
            oldest = min(oldest or self.writer.opened_at, self.writer.opened_at)
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    def unshipped(self) -> tuple[int, int]:
        """(segments, records) not shipped yet, including the open one."""
        with self.lock:
            segments, records = len(self.pending), sum(s.records for s in self.pending)
        if self.writer.fd is not None:
            segments, records = segments + 1, records + self.writer.records
        return segments, records

    def _target(self, segment: ClosedSegment) -> str:
        name = segment.path.name[:-len(CLOSED_SUFFIX)]
        instance, _, seq = name.rpartition("-")
        return serving_logs.segment_path(self.destination, segment.first_time, instance, int(seq))

    def _enforce_local_limit(self) -> None:
        total = sum(s.size for s in self.pending)
        while self.pending and total > self.max_local_bytes:
            oldest = self.pending.pop(0)
            total -= oldest.size
            oldest.path.unlink(missing_ok=True)
            self.stats["lost"] += 1
            self.stats["lost_records"] += oldest.records
            log.error("deleted unshipped segment %s (%d records): local log over %d bytes",
                      oldest.path.name, oldest.records, self.max_local_bytes)

    def ship(self, force: bool = False, deadline: float | None = None) -> None:
        """Roll the open segment if due, then ship everything closed (unless waiting to retry).
        One call at a time: the final one at shutdown waits for a periodic one still running."""
        with self.shipping:
            self._ship(force, deadline)

    def _ship(self, force: bool, deadline: float | None) -> None:
        self.writer.roll_if_due()
        with self.lock:
            self.pending += self.writer.take_closed()
            self._enforce_local_limit()
            if not self.pending or (not force and self.clock() < self.next_try):
                return
            batch = list(self.pending)
        for segment in batch:
            if deadline is not None and time.monotonic() > deadline:
                return
            try:
                # Level 1: a third of level 6's CPU for about 1.3x the bytes on JSON lines, and the
                # sidecar's CPU is what serves requests.
                data = serving_logs.gzip_bytes(segment.path.read_bytes(), level=1)
                storage.write_bytes(self._target(segment), data)
            except (OSError, ValueError) as error:
                with self.lock:
                    self.stats["failed"] += 1
                    self.next_try = self.clock() + self.retry_s
                if self.clock() - self._logged >= REPEAT_LOG_S:   # counted every time, logged now and then
                    self._logged = self.clock()
                    log.warning("shipping %s failed (%d failures so far; retry every %.0fs): %s", segment.path.name,
                                self.stats["failed"], self.retry_s, error)
                return
            segment.path.unlink(missing_ok=True)
            with self.lock:
                self.pending.remove(segment)
                self.stats["shipped"] += 1
                self.stats["bytes"] += len(data)
