"""The retraining trigger: its decisions, and the service behind a real Alertmanager starting a
real pipeline run once however often the alert is sent."""
from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flywheel import params, serving_logs
from flywheel.params import TriggerParams
from pipelines.loop_stack import Alertmanager, free_port, python, wait_for
from tests.support.log_files import prediction, write_feedback, write_segment
from tests.support.servers import MODEL_NAME, push_version
from trigger import decide


def notification(name="FlywheelFeatureDriftSustained", starts="2026-01-05T10:00:00Z", status="firing", key="{}:{a}"):
    return {"version": "4", "groupKey": key, "status": status, "receiver": "flywheel-trigger",
            "alerts": [{"status": status, "labels": {"alertname": name, "model": MODEL_NAME, "feature": "trip_miles"},
                        "annotations": {"summary": "drifted"}, "startsAt": starts}]}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_decider_one_run_per_episode_cooldown_and_one_in_flight():
    clock = Clock()
    decider = decide.Decider(TriggerParams(cooldown_s=600), clock)
    first = decider.begin(decide.parse(notification()))
    assert first.action == decide.STARTED
    assert decider.begin(decide.parse(notification(key="{}:{b}"))).action == decide.BUSY
    decider.started(first.key)
    assert decider.begin(decide.parse(notification())).action == decide.DUPLICATE
    decider.finished(first.key)
    assert decider.begin(decide.parse(notification())).action == decide.DUPLICATE
    later = decider.begin(decide.parse(notification(starts="2026-01-05T11:00:00Z")))
    assert later.action == decide.COOLDOWN and "cooldown 600s" in later.reason
    clock.now += 601
    assert decider.begin(decide.parse(notification(starts="2026-01-05T11:00:00Z"))).action == decide.STARTED


def test_decider_ignores_other_alerts_and_resolved_groups_and_waiting_frees_the_slot():
    decider = decide.Decider(TriggerParams(), Clock())
    assert decider.begin(decide.parse(notification(name="FlywheelHighErrorRate"))).action == decide.IGNORED
    assert decider.begin(decide.parse(notification(status="resolved"))).action == decide.IGNORED
    started = decider.begin(decide.parse(notification()))
    decider.waiting(started.key)   # too few labeled rows: no run, the next notification tries again
    assert decider.begin(decide.parse(notification())).action == decide.STARTED


@pytest.mark.parametrize("payload, message", [
    ([], "webhook JSON object"), ({"version": "3"}, "version '3'"),
    ({"version": "4", "alerts": "x"}, "'alerts' must be a list"),
    ({"version": "4", "alerts": [{"labels": {}}]}, "alerts\\[0\\] has no labels.alertname"),
    ({"version": "4", "alerts": []}, "'groupKey'"),
])
def test_bad_notifications_are_named(payload, message):
    with pytest.raises(decide.NotificationError, match=message):
        decide.parse(payload)


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        return error.code, json.loads(text) if text.startswith("{") else {"text": text}


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def service(tmp_path, exported_versions):
    """The trigger service on a free port, for a model with version 1 pushed and 7 labeled rows logged."""
    repository = tmp_path / "model_repository"
    push_version(exported_versions, repository, 1)
    logs = serving_logs.logs_root(str(repository), MODEL_NAME)
    now = time.time()
    row = {"trip_miles": 2.5, "payment_type": "Cash", "fare": 9.0, "company": "Company 1"}
    write_segment(logs, [prediction(f"r{i}", [row], [0.4], now) for i in range(7)], seq=1)
    write_feedback(logs, [(f"r{i}", [i % 2]) for i in range(7)], now + 1)
    port = free_port()
    events_file = tmp_path / "events.jsonl"

    def start(*sets: str):
        process = python("trigger", ["-m", "trigger", "--port", str(port), "--model-repository", str(repository),
                                     "--model-name", MODEL_NAME, "--events", str(events_file),
                                     "--set", f"trigger.span_dir={tmp_path / 'spans'}", "--set", "trigger.cooldown_s=600",
                                     *[a for s in sets for a in ("--set", s)]], tmp_path / "trigger.log")
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
                 60, "the trigger service", process)
        return process
    start.url, start.events, start.tmp = f"http://127.0.0.1:{port}", events_file, tmp_path
    return start


def test_service_waits_for_labeled_rows_and_refuses_bad_bodies(service):
    process = service("trigger.min_labeled_rows=100")
    try:
        status, answer = post(f"{service.url}/api/v1/alerts", json.dumps(notification()).encode())
        assert status == 200 and answer["action"] == "waiting"
        assert "7 labeled row(s)" in answer["reason"] and "fewer than the 100 needed" in answer["reason"]
        status, answer = post(f"{service.url}/api/v1/alerts", b"{not json")
        assert status == 400
        status, _ = post(f"{service.url}/api/v1/alerts", b"[" + b"1," * 600_000 + b"1]")
        assert status == 413
    finally:
        process.stop()
    assert [e["action"] for e in events(service.events) if e["event"] == "notification"] == ["waiting"]


def test_same_alert_ten_times_through_alertmanager_starts_one_run(service):
    """Alertmanager (real) gets the alert 10 times and the webhook gets it 10 times more, some at
    once: one span, one run (the real pipeline command, which fails at ingest on 7 rows), and the
    episode stays handled after a restart."""
    process = service("trigger.min_labeled_rows=5")
    alertmanager = Alertmanager(service.tmp, f"{service.url}/api/v1/alerts", group_wait_s=0.5, group_interval="2s",
                                repeat_interval="3s")
    try:
        alert = {"labels": {"alertname": "FlywheelFeatureDriftSustained", "model": MODEL_NAME, "namespace": "flywheel"},
                 "annotations": {"summary": "trip_miles drifted"}, "startsAt": "2026-01-05T10:00:00Z"}
        for _ in range(10):
            alertmanager.post_alerts([alert])
        started = wait_for(lambda: [e for e in events(service.events) if e["event"] == "run_started"], 60,
                           "a run started by Alertmanager's notification", process)
        group = started[0]["key"].split("@")[0]
        body = json.dumps({**notification(starts="2026-01-05T10:00:00Z"), "groupKey": group}).encode()
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: post(f"{service.url}/api/v1/alerts", body)[1]["action"], range(10)))
        assert set(answers) <= {"duplicate", "busy"}
        finished = wait_for(lambda: [e for e in events(service.events) if e["event"] == "run_finished"], 120,
                            "the run to end", process)
        assert finished[0]["succeeded"] is False and "ingest" in Path(finished[0]["log"]).read_text()
        time.sleep(4)   # Alertmanager's repeat: duplicates
        runs = [e for e in events(service.events) if e["event"] == "run_started"]
        assert len(runs) == 1
        assert runs[0]["trigger"]["alert"] == "FlywheelFeatureDriftSustained"
        assert runs[0]["trigger"]["labels"]["model"] == MODEL_NAME
        assert len(list((service.tmp / "spans").glob("span-logs-*.csv"))) == 1
        metrics = urllib.request.urlopen(f"{service.url}/metrics", timeout=5).read().decode()
        assert 'flywheel_trigger_runs_total{outcome="failed"} 1.0' in metrics
    finally:
        alertmanager.stop()
        process.stop()
    process = service("trigger.min_labeled_rows=5")
    try:
        _, answer = post(f"{service.url}/api/v1/alerts", body)
        assert answer["action"] == "duplicate"
    finally:
        process.stop()


@pytest.mark.parametrize("content", ["surprise: {}\n", None])   # a section it does not know; a directory
def test_a_params_file_it_cannot_use_is_named_and_nothing_starts(tmp_path, capsys, content):
    from trigger.__main__ import main

    bad = tmp_path / "settings.yaml"
    bad.write_text(content) if content is not None else bad.mkdir()
    with pytest.raises(SystemExit) as exited:
        main(["--params", str(bad), "--port", str(free_port())])
    assert exited.value.code == 2
    assert str(bad) in capsys.readouterr().err


def test_local_runs_read_the_services_params_file(tmp_path, monkeypatch):
    """A run the trigger starts here reads the settings the service was given, not the working
    directory's params.yaml."""
    from trigger import runs

    started = []
    monkeypatch.setattr(runs.subprocess, "Popen", lambda command, **kw: started.append(command) or _Finished())
    settings = tmp_path / "settings.yaml"
    target = runs.Target(str(tmp_path / "repository"), MODEL_NAME, run_log_dir=str(tmp_path / "runs"),
                         params_file=str(settings))
    span = type("Span", (), {"path": str(tmp_path / "span.csv"), "label": "big_tipper"})()
    runs.LocalRun(target, params.load(), span, {"kind": "alert"})
    command = started[0]
    assert command[command.index("--params") + 1] == str(settings)


class _Finished:
    pid = 0

    def poll(self):
        return 0
