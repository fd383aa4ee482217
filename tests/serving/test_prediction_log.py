"""Prediction log: rotation, no torn lines (disk full, crash), drop accounting when the writer is slow."""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.request

from monitoring.prediction_log import LOG_NAME, LogWriter, read_records

from tests.support.servers import MODEL_NAME
from tests.support.taxi_rows import make_frame, rows_of


def test_rotation_keeps_backups_and_whole_lines(tmp_path):
    writer = LogWriter(tmp_path, max_bytes=2000, backups=2)
    for i in range(100):
        assert writer.write([json.dumps({"i": i, "pad": "x" * 50})])
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [LOG_NAME, f"{LOG_NAME}.1", f"{LOG_NAME}.2"]
    seen = []
    for name in files:
        assert os.path.getsize(tmp_path / name) <= 2000
        records, skipped = read_records(tmp_path / name)
        assert skipped == 0
        seen += [r["i"] for r in records]
    assert sorted(seen) == list(range(100 - len(seen), 100))  # the newest records, none torn


def test_disk_full_drops_batch_without_torn_line(tmp_path):
    (tmp_path / LOG_NAME).symlink_to("/dev/full")  # every write fails with ENOSPC
    writer = LogWriter(tmp_path)
    assert writer.write(['{"a": 1}']) is False
    writer.close()


def test_crash_mid_line_is_cut_on_reopen_and_skipped_by_reader(tmp_path):
    path = tmp_path / LOG_NAME
    path.write_bytes(b'{"ok": 1}\n{"torn": ')
    records, skipped = read_records(path)
    assert records == [{"ok": 1}] and skipped == 1
    writer = LogWriter(tmp_path)
    assert writer.write(['{"ok": 2}'])
    writer.close()
    assert read_records(path) == ([{"ok": 1}, {"ok": 2}], 0)
    assert writer.repaired_bytes == len(b'{"torn": ')


class SlowWriter(LogWriter):
    def write(self, lines):
        time.sleep(0.05)
        return super().write(lines)


def _post_many(url: str, n: int) -> list[int]:
    body = json.dumps({"instances": rows_of(make_frame(1, seed=4))}).encode()
    codes = []

    def worker(count):
        for _ in range(count):
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=20) as resp:
                codes.append(resp.status)
    threads = [threading.Thread(target=worker, args=(n // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def test_slow_writer_drops_and_counts_but_serves_everything(dev_server, sidecar_factory, tmp_path):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, queue_size=2,
                              writer=SlowWriter(tmp_path / "slow"))
    codes = _post_many(f"{sidecar.url}/v1/models/{MODEL_NAME}:predict", 80)
    sidecar.drain()
    assert codes == [200] * 80
    written = sidecar.metric("flywheel_prediction_log_records_total", {"outcome": "written"})
    dropped = sidecar.metric("flywheel_prediction_log_records_total", {"outcome": "dropped"})
    assert dropped > 0 and written + dropped == 80
    assert len(read_records(tmp_path / "slow" / LOG_NAME)[0]) == written


def test_full_disk_drops_and_counts_but_serves(dev_server, sidecar_factory, tmp_path):
    log_dir = tmp_path / "full"
    log_dir.mkdir()
    (log_dir / LOG_NAME).symlink_to("/dev/full")
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, writer=LogWriter(log_dir))
    assert _post_many(f"{sidecar.url}/v1/models/{MODEL_NAME}:predict", 8) == [200] * 8
    sidecar.drain()
    assert sidecar.metric("flywheel_prediction_log_records_total", {"outcome": "dropped"}) == 8
    assert sidecar.metric("flywheel_drift_window_rows", {"model": MODEL_NAME}) == 8  # drift keeps working
