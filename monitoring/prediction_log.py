"""Prediction log: JSON lines in size-rotated files, written whole or not at all.

`LogWriter.write(lines)` appends a batch with one os.write loop on an O_APPEND descriptor. If a
write fails part-way (disk full, I/O error) the file is truncated back to where the batch began,
so a reader never sees a torn line, and the batch is reported as dropped. A process killed in the
middle of a write can still leave a partial last line: `LogWriter` cuts it off when it reopens the
file, and `read_records` skips (and counts) any line that is not a JSON object.
Rotation: predictions.jsonl -> predictions.jsonl.1 -> ... -> .<backups>, oldest deleted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

LOG_NAME = "predictions.jsonl"
REDACTED = "[REDACTED]"


def redact(row: dict, pii_fields: frozenset[str]) -> dict:
    if not pii_fields.intersection(row):
        return row
    return {k: (REDACTED if k in pii_fields else v) for k, v in row.items()}


class LogWriter:
    def __init__(self, log_dir: str | Path, max_bytes: int = 64 * 1024 * 1024, backups: int = 5):
        self.dir = Path(log_dir)
        self.path = self.dir / LOG_NAME
        self.max_bytes = max_bytes
        self.backups = backups
        self.repaired_bytes = 0
        self.fd: int | None = None

    def _open(self) -> int:
        if self.fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._cut_torn_tail()
        return self.fd

    def _cut_torn_tail(self) -> None:
        """A crash mid-write leaves bytes after the last newline: drop them."""
        size = os.fstat(self.fd).st_size
        if not size or not self.path.is_file():
            return
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 65536))
            tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
        if keep != size:
            os.ftruncate(self.fd, keep)
            self.repaired_bytes += size - keep

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = None
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.dir / f"{LOG_NAME}.{i}"
            if older.exists():
                os.replace(older, self.dir / f"{LOG_NAME}.{i + 1}")
        os.replace(self.path, self.dir / f"{LOG_NAME}.1")

    def write(self, lines: list[str]) -> bool:
        """Append lines (each without its newline). True if all were written, False if none were."""
        if not lines:
            return True
        data = ("\n".join(lines) + "\n").encode()
        start = None
        try:
            fd = self._open()
            start = os.fstat(fd).st_size
            if start and start + len(data) > self.max_bytes:
                self._rotate()
                fd = self._open()
                start = 0
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            return True
        except OSError:
            self._undo_partial(start)
            return False

    def _undo_partial(self, start: int | None) -> None:
        if self.fd is None or start is None:
            return
        try:
            if os.fstat(self.fd).st_size > start:
                os.ftruncate(self.fd, start)
        except OSError:  # cannot even truncate (e.g. a device): reopen next time and cut the tail
            try:
                os.close(self.fd)
            finally:
                self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_records(path: str | Path) -> tuple[list[dict], int]:
    """-> (records, number of skipped lines that were torn or not JSON objects)."""
    records, skipped = [], 0
    for line in _lines(Path(path)):
        try:
            record = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                yield line
            elif line.strip():
                yield b"\x00torn"  # no newline: the write never finished
