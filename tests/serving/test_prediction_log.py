"""The prediction log: segments closed by size and age, shipped to dated paths under the log
destination, no torn line after a failed write or a crash, shipping failures counted, retried and
bounded; and the sidecar process itself: SIGTERM under load ships every acknowledged prediction,
SIGINT stops without a traceback, kill -9 loses at most what was queued."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from flywheel import serving_logs
from monitoring.segments import CLOSED_SUFFIX, OPEN_SUFFIX, SegmentWriter, Shipper
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, ROOT, wait_http
from tests.support.taxi_rows import make_frame, rows_of


class Clock:
    def __init__(self, now: float = 1_767_657_600.0):   # 2026-01-06 00:00 UTC
        self.now = now

    def __call__(self) -> float:
        return self.now


def line(i: int, time_s: float) -> bytes:
    return serving_logs.encode({"kind": "prediction", "time": time_s, "request_id": f"r{i}", "pad": "x" * 40})


def test_segments_close_by_size_and_age_and_ship_to_dated_paths(tmp_path):
    clock = Clock()
    writer = SegmentWriter(tmp_path / "local", "pod-a-1", max_bytes=1000, max_age_s=60, clock=clock)
    shipper = Shipper(writer, str(tmp_path / "dest"), max_local_bytes=1 << 20, retry_s=5, clock=clock)
    for i in range(30):
        assert writer.write([line(i, clock.now)], clock.now)
    shipper.ship()                                   # the closed (full) segments go; the open one stays
    shipped = serving_logs.list_files(str(tmp_path / "dest"), serving_logs.LOGGED_PREDICTIONS_DIR)
    assert len(shipped) >= 2 and shipper.unshipped()[0] == 1
    clock.now += 86400 + 61                           # next day: the open segment is old enough
    writer.write([line(30, clock.now)], clock.now)
    clock.now += 61
    shipper.ship()
    records, skipped = serving_logs.read_all(str(tmp_path / "dest"), serving_logs.LOGGED_PREDICTIONS_DIR)
    assert skipped == 0 and [r["request_id"] for r in records] == [f"r{i}" for i in range(31)]
    days = sorted(p.parent.name for p in map(Path, serving_logs.list_files(str(tmp_path / "dest"),
                                                                         serving_logs.LOGGED_PREDICTIONS_DIR)))
    assert days[0] == "date=2026-01-06" and days[-1] == "date=2026-01-07"
    names = [Path(p).name for p in serving_logs.list_files(str(tmp_path / "dest"), serving_logs.LOGGED_PREDICTIONS_DIR)]
    assert all(n.startswith("pod-a-1-") and n.endswith(".jsonl.gz") for n in names)
    assert shipper.stats["shipped"] == len(names) and shipper.stats["failed"] == 0 and shipper.unshipped() == (0, 0)
    assert not list((tmp_path / "local").glob("*.jsonl*"))  # shipped segments leave the pod's disk


def test_a_failed_write_leaves_no_torn_line(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse a write part-way (EFBIG), as a full disk does."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from monitoring.segments import SegmentWriter
        writer = SegmentWriter({str(tmp_path)!r}, "pod", max_bytes=10**9, max_age_s=1e9)
        writer.write([b'{{"first": 1}}'], 0.0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        ok = writer.write([b'{{"a": "%s"}}' % (b"x" * 100)] * 3, 0.0)
        print(ok, writer.size)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "13"], result.stderr
    (segment,) = tmp_path.glob(f"*{OPEN_SUFFIX}")
    assert serving_logs.parse_records(segment.read_bytes()) == ([{"first": 1}], 0)


def test_a_crashed_processes_segment_is_cut_closed_and_shipped_by_the_next(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / f"pod-a-1-000003{OPEN_SUFFIX}").write_bytes(line(1, 1_767_657_600.0) + b"\n" + b'{"torn": ')
    writer = SegmentWriter(local, "pod-a-2", max_bytes=1 << 20, max_age_s=60)
    assert writer.repaired_bytes == len(b'{"torn": ')
    assert not list(local.glob(f"*{OPEN_SUFFIX}")) and len(list(local.glob(f"*{CLOSED_SUFFIX}"))) == 1
    shipper = Shipper(writer, str(tmp_path / "dest"), max_local_bytes=1 << 20, retry_s=5)
    shipper.ship()
    records, skipped = serving_logs.read_all(str(tmp_path / "dest"), serving_logs.LOGGED_PREDICTIONS_DIR)
    assert [r["request_id"] for r in records] == ["r1"] and skipped == 0


def test_shipping_failures_are_counted_retried_and_bounded_on_local_disk(tmp_path):
    clock = Clock()
    blocked = tmp_path / "dest"
    blocked.write_text("a file where the destination directory should be")
    writer = SegmentWriter(tmp_path / "local", "pod", max_bytes=300, max_age_s=60, clock=clock)
    shipper = Shipper(writer, str(blocked), max_local_bytes=1000, retry_s=5, clock=clock)
    for i in range(40):
        writer.write([line(i, clock.now)], clock.now)
        shipper.ship()
        clock.now += 1
    assert shipper.stats["failed"] >= 2 and shipper.stats["shipped"] == 0
    assert shipper.stats["lost"] > 0 and shipper.stats["lost_records"] > 0          # oldest deleted, counted
    assert sum(p.stat().st_size for p in (tmp_path / "local").glob("*.jsonl*")) <= 1000 + 300
    assert shipper.oldest_unshipped_age() > 0
    blocked.unlink()
    clock.now += 10                                  # past the retry wait
    shipper.ship()
    records, _ = serving_logs.read_all(str(blocked), serving_logs.LOGGED_PREDICTIONS_DIR)
    kept = {r["request_id"] for r in records}
    assert len(kept) + shipper.stats["lost_records"] + writer.records == 40   # shipped + lost + still open


# --- the sidecar process --------------------------------------------------------------------

def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monitoring", *args], cwd=ROOT, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def _sidecar_args(dev_server, port: int, tmp_path: Path, pod: str = "p") -> list[str]:
    return ["--port", str(port), "--upstream", dev_server.rest_url, "--model-repository", str(dev_server.repository),
            "--model-name", MODEL_NAME, "--log-dir", str(tmp_path / "local"), "--log-destination",
            str(tmp_path / "dest"), "--pod", pod, "--linger-s", "0.05"]


def _load(url: str, stop: threading.Event, acknowledged: list, errors: list) -> None:
    body = json.dumps({"instances": rows_of(make_frame(2, seed=5))}).encode()
    while not stop.is_set():
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
                acknowledged.append(resp.headers["X-Request-Id"])
        except (urllib.error.URLError, ConnectionError, OSError) as err:
            errors.append(err)   # connection refused once the sidecar has stopped listening
            time.sleep(0.01)


def _sigterm_under_load(dev_server, tmp_path: Path, client, seconds: float) -> Path:
    """A sidecar under four `client(port, stop)` threads for `seconds`, then SIGTERM: it must
    exit 0; the clients are stopped after it. Returns the sidecar's log."""
    port = free_port()
    log = tmp_path / "sidecar.log"
    proc = _start(_sidecar_args(dev_server, port, tmp_path), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz/ready", 60)
        stop = threading.Event()
        clients = [threading.Thread(target=client, args=(port, stop)) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(seconds)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        stop.set()
        for c in clients:
            c.join()
    finally:
        if proc.poll() is None:
            proc.kill()
    return log


def test_sigterm_under_load_ships_every_acknowledged_prediction(dev_server, tmp_path):
    acknowledged, errors = [], []
    log = _sigterm_under_load(dev_server, tmp_path, lambda port, stop: _load(
        f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict", stop, acknowledged, errors), 2.0)
    records, skipped = serving_logs.read_all(str(tmp_path / "dest"), serving_logs.LOGGED_PREDICTIONS_DIR)
    logged = {r["request_id"] for r in records}
    assert len(acknowledged) > 20 and skipped == 0
    assert set(acknowledged) <= logged, f"{len(set(acknowledged) - logged)} acknowledged predictions not shipped"
    text = log.read_text()
    assert "Traceback" not in text and "0 not shipped (0 records), 0 lost" in text
    assert not list((tmp_path / "local").glob("*.jsonl*"))


def _kept_alive(port: int, body: bytes, stop: threading.Event, answers: list, errors: list) -> None:
    """Requests on one kept-alive connection, idle 20 ms between them (as most are, most of the
    time), a new one only when the server says `Connection: close`; what a reused connection fails
    with is an error the client could not have avoided."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    fresh = True   # the next request opens a new connection
    while not stop.wait(0.02):
        try:
            conn.request("POST", f"/v1/models/{MODEL_NAME}:predict", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            answers.append((resp.status, resp.getheader("Connection")))
            fresh = resp.will_close
        except (http.client.HTTPException, OSError) as err:
            if fresh:
                # A new connection refused, or reset from the backlog as the sidecar stops
                # listening: the pod is gone, as it should be.
                break
            errors.append(repr(err))
            conn.close()
            fresh = True
    conn.close()


def test_sigterm_tells_kept_alive_clients_to_leave_before_closing_their_connections(dev_server, tmp_path):
    body = json.dumps({"instances": rows_of(make_frame(2, seed=5))}).encode()
    answers, errors = [], []
    _sigterm_under_load(dev_server, tmp_path, lambda port, stop: _kept_alive(port, body, stop, answers, errors), 1.0)
    assert not errors, errors[:5]
    assert {status for status, _ in answers} == {200}
    assert sum(connection == "close" for _, connection in answers) >= 4, "each client told to leave"


def test_sigint_stops_without_a_traceback(dev_server, tmp_path):
    port = free_port()
    log = tmp_path / "sidecar.log"
    proc = _start(_sidecar_args(dev_server, port, tmp_path), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz/live", 60)
        for _ in range(3):      # Ctrl-C pressed impatiently
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "signal wakeup" not in text and "stopped:" in text


def test_kill_9_loses_at_most_what_was_queued_and_the_rest_ships_on_restart(dev_server, tmp_path):
    port = free_port()
    proc = _start(_sidecar_args(dev_server, port, tmp_path, pod="same-pod"), tmp_path / "first.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz/ready", 60)
        stop, acknowledged, errors = threading.Event(), [], []
        client = threading.Thread(target=_load, args=(f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict",
                                                      stop, acknowledged, errors))
        client.start()
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        client.join()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list((tmp_path / "local").glob(f"*{OPEN_SUFFIX}")), "the killed process left its open segment"
    port = free_port()
    again = _start(_sidecar_args(dev_server, port, tmp_path, pod="same-pod"), tmp_path / "second.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz/live", 60)
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0
    finally:
        if again.poll() is None:
            again.kill()
    records, skipped = serving_logs.read_all(str(tmp_path / "dest"), serving_logs.LOGGED_PREDICTIONS_DIR)
    lost = set(acknowledged) - {r["request_id"] for r in records}
    # What was acknowledged but still in the observer's queue (at most one linger period of traffic
    # and the batch being written) is all a kill -9 may lose.
    assert len(acknowledged) > 20 and len(lost) <= 40, (len(acknowledged), len(lost))
    assert skipped <= 1   # the one line a kill can cut is cut when the next process reopens the segment


def test_a_full_queue_drops_and_counts_but_serves_everything(dev_server, sidecar_factory):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, queue_size=2, linger_s=0.5)
    body = json.dumps({"instances": rows_of(make_frame(1, seed=4))}).encode()
    codes = []

    def worker():
        for _ in range(20):
            req = urllib.request.Request(f"{sidecar.url}/v1/models/{MODEL_NAME}:predict", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=20) as resp:
                codes.append(resp.status)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sidecar.drain()
    assert codes == [200] * 80
    written = sidecar.metric("flywheel_prediction_log_records_total", {"outcome": "written"})
    dropped = sidecar.metric("flywheel_prediction_log_records_total", {"outcome": "dropped"})
    assert dropped > 0 and written + dropped == 80


def test_a_poison_record_stays_alone_in_its_batch(exported_versions, tmp_path):
    """A record the observer cannot read (here JSON nested past Python's recursion limit, which
    TF Serving may well accept) is logged in short form and counted; its batch is unharmed."""
    from prometheus_client import CollectorRegistry

    from flywheel.params import MonitoringParams
    from flywheel.redaction import Redactor
    from monitoring import baseline as baseline_io
    from monitoring.feedback import FeedbackState
    from monitoring.metrics import SidecarMetrics
    from monitoring.observer import Observer, Record
    from monitoring.window import DriftWindow

    baseline = baseline_io.load(str(exported_versions[1].parent.parent), MODEL_NAME, 1, 100, 20)
    window = DriftWindow(baseline, 100)
    metrics = SidecarMetrics(MODEL_NAME, CollectorRegistry())
    writer = SegmentWriter(tmp_path, "pod", 1 << 20, 60)
    params = MonitoringParams()
    observer = Observer(MODEL_NAME, "pod", metrics, writer, FeedbackState(100, 1 << 20, 10, 60),
                        lambda: (baseline, window), Redactor(["rider_email"], params.pii_patterns), 100, 1 << 24, 0.01, 10)
    good = json.dumps({"instances": rows_of(make_frame(2, seed=1))}).encode()
    poison = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = b'{"predictions": [0.1, 0.9]}'
    batch = [Record(1.0, f"r{i}", 1, body, 200, answer, 0.001) for i, body in enumerate((good, poison, good))]
    observer._process(batch)
    observer.flush_drift()
    (segment,) = tmp_path.glob(f"*{OPEN_SUFFIX}")
    records, skipped = serving_logs.parse_records(segment.read_bytes())
    assert skipped == 0 and [r["request_id"] for r in records] == ["r0", "r1", "r2"]
    assert records[0]["rows"] == records[2]["rows"] == 2 and records[1]["flags"] == ["unparsed"]
    assert records[1]["request_bytes"] == len(poison) and window.rows == 4
    assert observer.written == 3


def test_non_finite_predictions_are_flagged_whether_answered_as_null_or_nan(tmp_path):
    """The development model server answers a NaN prediction as null, TF Serving as a literal
    NaN: both log lines carry the `non_finite` flag and stay strict JSON."""
    from prometheus_client import CollectorRegistry

    from flywheel.params import MonitoringParams
    from flywheel.redaction import Redactor
    from monitoring.feedback import FeedbackState
    from monitoring.metrics import SidecarMetrics
    from monitoring.observer import Observer, Record

    writer = SegmentWriter(tmp_path, "pod", 1 << 20, 60)
    observer = Observer(MODEL_NAME, "pod", SidecarMetrics(MODEL_NAME, CollectorRegistry()), writer,
                        FeedbackState(100, 1 << 20, 10, 60), lambda: (None, None),
                        Redactor([], MonitoringParams().pii_patterns), 100, 1 << 24, 0.01, 10)
    body = json.dumps({"instances": rows_of(make_frame(2, seed=1))}).encode()
    answers = (b'{"predictions": [0.1, null]}', b'{"predictions": [0.1, NaN]}', b'{"predictions": [[0.1], [0.9]]}')
    observer._process([Record(1.0, f"r{i}", 1, body, 200, a, 0.001) for i, a in enumerate(answers)])
    (segment,) = tmp_path.glob(f"*{OPEN_SUFFIX}")
    for raw in segment.read_bytes().splitlines():
        serving_logs.loads_strict(raw)
    records, skipped = serving_logs.parse_records(segment.read_bytes())
    assert skipped == 0 and [r.get("flags") for r in records] == [["non_finite"], ["non_finite"], None]
    assert records[0]["predictions"] == records[1]["predictions"] == [0.1, None]


def test_integers_beyond_64_bits_are_logged_exactly():
    value, strict = serving_logs.read_json(b'{"instances": [{"trip_seconds": 18446744073709551616}]}')
    assert value["instances"][0]["trip_seconds"] == 2 ** 64 and not strict
    assert serving_logs.encode({"features": value}, strict) == \
        b'{"features":{"instances":[{"trip_seconds":18446744073709551616}]}}'
    assert serving_logs.read_json(b'{"a": 1234567890123456789}') == ({"a": 1234567890123456789}, True)
