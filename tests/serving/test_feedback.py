"""Feedback: labels in the training file's own values (class indices still accepted), checked
against the model's label domain; durable in the fleet's feedback log before the answer; joined
to its prediction whichever replica it is posted to; first answer wins; a bearer token; and
requests that name features by their column names."""
from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flywheel import names, serving_logs
from monitoring.feedback import FeedbackError, LabelDomain, parse_body
from tests.support.bundles import train_versions
from tests.support.frames import make_frame as make_table
from tests.support.servers import MODEL_NAME, start_dev_server
from tests.support.taxi_rows import make_frame, rows_of

ROWS = rows_of(make_frame(3, seed=9))


def post(url: str, payload, headers: dict | None = None) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def predict(sidecar, rows=ROWS, model: str = MODEL_NAME) -> tuple[str, list]:
    req = urllib.request.Request(f"{sidecar.url}/v1/models/{model}:predict",
                                 data=json.dumps({"instances": rows}).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["X-Request-Id"], json.loads(resp.read())["predictions"]


# --- the label domain --------------------------------------------------------------------------

def test_labels_as_the_training_file_holds_them():
    strings = LabelDomain(names.MULTICLASS, ["high", "low", "mid"])
    assert strings.value("mid") == ("mid", 2) and strings.value(0) == ("high", 0)   # value, or class index
    numbers = LabelDomain(names.MULTICLASS, [1, 2, 3])
    assert numbers.value(3) == (3, 2) and numbers.value(3.0) == (3, 2)             # numbers as numbers
    assert LabelDomain(names.BINARY, [0, 1]).value(1) == (1, 1)
    assert LabelDomain(names.BINARY, [False, True]).value(True) == (True, 1)
    assert LabelDomain(names.REGRESSION, []).value(12.5) == (12.5, None)
    assert numbers.index(0) == (1, 0)


@pytest.mark.parametrize("domain, label, message", [
    (LabelDomain(names.BINARY, [0, 1]), 7, "not one of the model's labels [0, 1]"),
    (LabelDomain(names.BINARY, [0, 1]), -1, "not one of the model's labels [0, 1]"),
    (LabelDomain(names.BINARY, [0, 1]), float("inf"), "not finite"),
    (LabelDomain(names.BINARY, [0, 1]), True, "not one of the model's labels"),
    (LabelDomain(names.MULTICLASS, [1, 2, 3]), 0, "not one of the model's labels [1, 2, 3]"),   # no index guessing
    (LabelDomain(names.MULTICLASS, ["high", "low", "mid"]), "HIGH", "(or a class index 0-2)"),
    (LabelDomain(names.MULTICLASS, ["high", "low", "mid"]), {"a": 1}, "not one of"),
    (LabelDomain(names.REGRESSION, []), "12", "not a finite number"),
    (LabelDomain(names.REGRESSION, []), float("nan"), "not a finite number"),
])
def test_labels_outside_the_domain_are_refused_with_the_domain(domain, label, message):
    with pytest.raises(FeedbackError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        domain.value(label)


@pytest.mark.parametrize("body, message", [
    ([], "expected"), ({"label": 1}, "request_id"), ({"request_id": "", "label": 1}, "request_id"),
    ({"request_id": "x" * 300, "label": 1}, "at most 256"), ({"request_id": "r", "lable": 1}, "unknown key"),
    ({"request_id": "r"}, "exactly one"), ({"request_id": "r", "label": 1, "labels": [1]}, "exactly one"),
    ({"request_id": "r", "labels": []}, "non-empty"), ({"request_id": "r", "labels": {"a": 1}}, "non-empty list"),
    ({"request_id": "r", "label_index": 2}, "class index 0-1"),
])
def test_feedback_bodies_are_checked(body, message):
    with pytest.raises(FeedbackError, match=message):
        parse_body(body, LabelDomain(names.BINARY, [0, 1]))


# --- one replica -----------------------------------------------------------------------------

@pytest.fixture
def sidecar(dev_server, sidecar_factory):
    return sidecar_factory(dev_server.rest_url, dev_server.repository)


def test_feedback_is_durable_before_the_answer_and_the_first_answer_wins(sidecar):
    request_id, scores = predict(sidecar)
    sidecar.drain()
    labels = [1, 0, 1]
    status, body = post(f"{sidecar.url}/v1/feedback", {"request_id": request_id, "labels": labels})
    expected = sum(int(s >= 0.5) == y for s, y in zip(scores, labels)) / len(labels)
    assert status == 200 and body == {"request_id": request_id, "rows": 3, "joined": True, "live_accuracy": expected}
    records, _ = serving_logs.read_all(sidecar.config.log_destination, serving_logs.FEEDBACK_DIR)
    assert [(r["request_id"], r["labels"], r["kind"]) for r in records] == [(request_id, labels, "feedback")]
    status, body = post(f"{sidecar.url}/v1/feedback", {"request_id": request_id, "labels": [0, 0, 0]})
    assert status == 409 and "already has feedback" in body["error"]
    m = lambda name, **labels: sidecar.metric(name, {"model": MODEL_NAME, **labels})  # noqa: E731
    assert m("flywheel_feedback_joined_rows_total") == 3 and m("flywheel_feedback_duplicates_total") == 1
    assert m("flywheel_feedback_requests_total", outcome="accepted") == 1
    assert m("flywheel_feedback_requests_total", outcome="duplicate") == 1
    assert m("flywheel_live_accuracy") == expected


def test_bad_feedback_is_a_json_4xx_and_records_nothing(sidecar):
    request_id, _ = predict(sidecar)
    sidecar.drain()
    url = f"{sidecar.url}/v1/feedback"
    for body, status in ((b"{oops", 400), (b'{"request_id": "r", "label": Infinity}', 400),
                         (b'{"request_id": "r", "label": 1e400}', 400), (b"[" * 100_000 + b"]" * 100_000, 400),
                         ({"request_id": request_id, "labels": [1]}, 400),           # 3 rows, 1 label
                         ({"request_id": request_id, "labels": [1, 7, 0]}, 400),
                         (b'\xff\xfe', 400)):
        got, answer = post(url, body)
        assert got == status and answer["error"].startswith("feedback:"), (body[:40], got, answer)
    assert serving_logs.read_all(sidecar.config.log_destination, serving_logs.FEEDBACK_DIR) == ([], 0)
    assert sidecar.metric("flywheel_feedback_requests_total", {"model": MODEL_NAME, "outcome": "rejected"}) == 7


def test_a_bearer_token_from_a_file_guards_feedback_and_can_be_rotated(dev_server, sidecar_factory, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")          # as a mounted Secret's key holds it
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, token_file=str(token_file))
    request_id, _ = predict(sidecar)
    other_id, _ = predict(sidecar)
    sidecar.drain()
    url = f"{sidecar.url}/v1/feedback"
    body = {"request_id": request_id, "labels": [1, 1, 1]}
    status, answer = post(url, body)
    assert status == 401 and "Bearer" in answer["error"]
    assert post(url, body, {"Authorization": "Bearer wrong"})[0] == 401
    assert post(url, body, {"Authorization": "Bearer s3cret"})[0] == 200
    token_file.write_text("n3w")                 # the Secret rotated; the sidecar re-reads the file
    sidecar.state.read_token()
    assert post(url, {"request_id": other_id, "labels": [0, 0, 0]}, {"Authorization": "Bearer s3cret"})[0] == 401
    assert post(url, {"request_id": other_id, "labels": [0, 0, 0]}, {"Authorization": "Bearer n3w"})[0] == 200
    assert sidecar.metric("flywheel_feedback_requests_total", {"model": MODEL_NAME, "outcome": "unauthorized"}) == 3


def test_feedback_is_refused_while_a_required_token_is_missing(dev_server, sidecar_factory, tmp_path):
    token_file = tmp_path / "token"             # as the manifests mount it: no token in the Secret yet
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, token_file=str(token_file),
                              feedback_token_required=True)
    request_id, _ = predict(sidecar)
    sidecar.drain()
    url, body = f"{sidecar.url}/v1/feedback", {"request_id": request_id, "labels": [1, 1, 1]}
    status, answer = post(url, body)
    assert status == 503 and "none is set" in answer["error"]
    token_file.write_text("generated")
    sidecar.state.read_token()
    assert post(url, body)[0] == 401
    assert post(url, body, {"Authorization": "Bearer generated"})[0] == 200


def test_request_ids_do_not_tell_the_next_ones(dev_server, sidecar_factory):
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository)
    ids = [predict(sidecar)[0] for _ in range(20)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == 20
    # Random 128-bit ids share no prefix worth the name (a prefix and a counter shared 16+ digits).
    assert max(len(os.path.commonprefix([a, b])) for a, b in zip(ids, ids[1:])) < 8


def test_feedback_that_cannot_be_recorded_is_503_and_can_be_retried(dev_server, sidecar_factory, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the log destination should be")
    sidecar = sidecar_factory(dev_server.rest_url, dev_server.repository, log_destination=str(blocked))
    request_id, _ = predict(sidecar)
    sidecar.drain()
    status, body = post(f"{sidecar.url}/v1/feedback", {"request_id": request_id, "labels": [1, 0, 1]})
    assert status == 503 and "not recorded" in body["error"]
    blocked.unlink()
    assert post(f"{sidecar.url}/v1/feedback", {"request_id": request_id, "labels": [1, 0, 1]})[0] == 200


# --- several replicas ------------------------------------------------------------------------

def test_feedback_posted_to_any_replica_joins_its_prediction(dev_server, sidecar_factory):
    """Three replicas behind random balancing, sharing the log destination as pods share the volume."""
    replicas = [sidecar_factory(dev_server.rest_url, dev_server.repository) for _ in range(3)]
    rng = random.Random(4)
    sent = []
    for i in range(120):
        rows = rows_of(make_frame(rng.randint(1, 3), seed=100 + i))
        request_id, scores = predict(rng.choice(replicas), rows)
        labels = [rng.randint(0, 1) for _ in rows]
        sent.append((request_id, scores, labels))
    codes = [post(f"{rng.choice(replicas).url}/v1/feedback", {"request_id": r, "labels": y})[0] for r, _, y in sent]
    assert set(codes) <= {200, 202} and 202 in codes
    # a duplicate posted to another replica than the first: refused or recorded, never joined twice
    request_id, _, labels = sent[0]
    for replica in replicas:
        post(f"{replica.url}/v1/feedback", {"request_id": request_id, "labels": labels})
    rows = sum(len(y) for _, _, y in sent)
    deadline = time.monotonic() + 20
    joined = 0
    while time.monotonic() < deadline:
        joined = sum(r.metric("flywheel_feedback_joined_rows_total", {"model": MODEL_NAME}) for r in replicas)
        if joined >= rows:
            break
        time.sleep(0.2)
    assert joined == rows, f"{joined} of {rows} labelled rows joined"
    correct = sum(r.metric("flywheel_feedback_correct_rows_total", {"model": MODEL_NAME}) for r in replicas)
    assert correct == sum(int(s >= 0.5) == y for _, scores, labels in sent for s, y in zip(scores, labels))
    duplicates = sum(r.metric("flywheel_feedback_duplicates_total", {"model": MODEL_NAME}) for r in replicas)
    refused = sum(r.metric("flywheel_feedback_requests_total", {"model": MODEL_NAME, "outcome": "duplicate"})
                  for r in replicas)
    assert duplicates == 3 and refused >= 1
    records, skipped = serving_logs.read_all(replicas[0].config.log_destination, serving_logs.FEEDBACK_DIR)
    chosen, extra = serving_logs.first_feedback(records)
    assert skipped == 0 and len(chosen) == len(sent) and extra == 3 - refused


# --- a multiclass model with string labels and a column name that is not a signature key -----

@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiclass")
    frame = make_table(4000, seed=3, task=names.MULTICLASS).rename(columns={"distance": "distance (km)"})
    versions = train_versions(root, [frame], "trips_multiclass", "label")
    server = start_dev_server(versions[1].parent.parent, root, model_name="trips_multiclass")
    yield server, frame
    server.stop()


def test_string_labels_and_original_column_names(multiclass, sidecar_factory):
    server, frame = multiclass
    sidecar = sidecar_factory(server.rest_url, server.repository, model_name="trips_multiclass")
    assert sidecar.state.baseline.column_to_key == {"distance (km)": "distance__km_"}
    rows = json.loads(frame.drop(columns=["label"]).head(3).to_json(orient="records"))
    direct = urllib.request.Request(f"{server.rest_url}/v1/models/trips_multiclass:predict",
                                    data=json.dumps({"instances": rows}).encode())
    with pytest.raises(urllib.error.HTTPError):   # TF Serving only knows the signature keys
        urllib.request.urlopen(direct, timeout=10)
    request_id, predictions = predict(sidecar, rows, "trips_multiclass")
    sidecar.drain()
    assert sidecar.state.window.rows == 3
    vocabulary = sidecar.state.baseline.domain.vocabulary
    assert vocabulary == ["high", "low", "mid"]
    labels = frame["label"].head(3).tolist()
    status, body = post(f"{sidecar.url}/v1/feedback", {"request_id": request_id, "labels": labels})
    predicted = [vocabulary[int(p["score"])] for p in predictions]
    assert status == 200 and body["live_accuracy"] == sum(p == y for p, y in zip(predicted, labels)) / 3
    status, body = post(f"{sidecar.url}/v1/feedback", {"request_id": "other", "label": "HIGH"})
    assert status == 400 and "['high', 'low', 'mid']" in body["error"]
    records, _ = serving_logs.read_all(sidecar.config.log_destination, serving_logs.LOGGED_PREDICTIONS_DIR)
    local = [serving_logs.parse_records(p.read_bytes())[0] for p in Path(sidecar.state.writer.dir).glob("*.jsonl")]
    (record,) = records + [r for found in local for r in found]
    assert "distance (km)" in record["features"][0] and "distance__km_" not in record["features"][0]
    feedback, _ = serving_logs.read_all(sidecar.config.log_destination, serving_logs.FEEDBACK_DIR)
    assert feedback[0]["labels"] == labels   # the training file's values, ready for a training span
