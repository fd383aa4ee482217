"""Hypothesis against a running sidecar (in front of the dev model server): predict bodies,
feedback bodies and headers. Whatever arrives, the sidecar answers (no crash, no 500), every
error is JSON with an "error" string, and every prediction-log line stays strict JSON.

Cost: ~1,100 generated requests, about 30 s after the session's model versions are trained."""
from __future__ import annotations

import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel import serving_logs
from monitoring.config import SidecarConfig
from monitoring.segments import OPEN_SUFFIX
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, SidecarThread
from tests.support.taxi_rows import make_frame, rows_of

ROWS = rows_of(make_frame(5, seed=12))
PREDICT = f"/v1/models/{MODEL_NAME}:predict"
FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SEEN: dict[int, int] = {}

# JSON values of every kind a client can send, with what strict parsers refuse (NaN, Infinity,
# lone surrogates, huge numbers) and nesting deep enough to reach Python's recursion limit.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30), st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                                                  min_size=1, max_size=3),
                    st.sampled_from(["someone@example.com", "555-123-4567", "Cash", "Company 3", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
KEYS = st.sampled_from(list(ROWS[0]) + ["rider_email", "RIDER_EMAIL", "extra", ""])


def deep(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


@st.composite
def predict_bodies(draw) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return deep(draw(st.integers(10, 200_000)))
    if kind == 2:   # valid rows with some values replaced, removed or added
        rows = []
        for row in draw(st.lists(st.sampled_from(ROWS), min_size=1, max_size=4)):
            row = dict(row)
            for key, value in draw(st.dictionaries(KEYS, VALUES, max_size=3)).items():
                row[key] = value
            for key in draw(st.lists(KEYS, max_size=2)):
                row.pop(key, None)
            rows.append(row)
        body = {"instances": rows}
    elif kind == 3:
        body = {"inputs": draw(st.dictionaries(KEYS, st.lists(VALUES, max_size=3), max_size=4))}
    elif kind == 4:
        body = draw(VALUES)
    else:
        body = {"instances": ROWS}
    text = json.dumps(body, allow_nan=True)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut]
    return text.encode("utf-8", "surrogatepass")


@st.composite
def feedback_bodies(draw) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return deep(draw(st.integers(10, 100_000))).replace(b"instances", b"labels")
    payload = draw(st.dictionaries(st.sampled_from(["request_id", "label", "labels", "label_index", "label_indices",
                                                    "extra"]), VALUES, max_size=3))
    if kind == 3:
        payload["request_id"] = draw(st.text(max_size=300))
    return json.dumps(payload, allow_nan=True).encode("utf-8", "surrogatepass")


HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
HEADERS = st.dictionaries(st.sampled_from(["Content-Encoding", "X-Request-Id", "Content-Type", "Authorization",
                                           "Accept-Encoding", "Transfer-Encoding", "Expect", "Connection"]),
                          HEADER_VALUE, max_size=4)


@pytest.fixture(scope="module")
def sidecar(dev_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    token = root / "token"
    token.write_text("t0ken")
    config = SidecarConfig.from_params(upstream=dev_server.rest_url, model_repository=str(dev_server.repository),
                                       model_name=MODEL_NAME, port=free_port(), pod="fuzz", log_dir=str(root / "log"),
                                       log_destination=str(root / "logs"), linger_s=0.01, max_body_bytes=1 << 20,
                                       token_file=str(token))
    sidecar = SidecarThread(config)
    yield sidecar
    sidecar.stop()


def send(sidecar, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", sidecar.config.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value.encode("latin-1"))
        if "Transfer-Encoding" not in headers:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def check(status: int, headers: dict, body: bytes) -> None:
    SEEN[status] = SEEN.get(status, 0) + 1
    assert status < 500 or status in (502, 503, 504), (status, body[:300])
    if status >= 400:
        assert headers.get("Content-Type", "").startswith("application/json"), (status, headers, body[:200])
        error = json.loads(body)["error"]
        assert isinstance(error, str) and error


@FUZZ
@given(body=predict_bodies(), gzip_it=st.booleans())
def test_predict_bodies(sidecar, body, gzip_it):
    import gzip
    headers = {"Content-Type": "application/json"}
    if gzip_it:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    check(*send(sidecar, "POST", PREDICT, body, headers))


@FUZZ
@given(body=feedback_bodies(), authorized=st.booleans())
def test_feedback_bodies(sidecar, body, authorized):
    headers = {"Content-Type": "application/json", **({"Authorization": "Bearer t0ken"} if authorized else {})}
    status, answer_headers, answer = send(sidecar, "POST", "/v1/feedback", body, headers)
    check(status, answer_headers, answer)
    assert status in ((202, 400, 409, 413) if authorized else (401,)), (status, body[:100], answer[:200])


@FUZZ
@given(headers=HEADERS, path=st.sampled_from([PREDICT, "/v1/feedback", f"/v1/models/{MODEL_NAME}", "/metrics",
                                             "/healthz/ready", "/v1/models/x%00y:predict"]))
def test_headers(sidecar, headers, path):
    try:
        check(*send(sidecar, "POST" if "predict" in path or "feedback" in path else "GET", path,
                    json.dumps({"instances": ROWS}).encode(), headers))
    except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
        # A request head the sidecar cannot frame (e.g. a chunked body that is not chunked) ends
        # the connection, as any HTTP server does: not a crash as long as the sidecar still answers.
        assert send(sidecar, "GET", "/healthz/live", b"", {})[0] == 200


def test_afterwards_alive_and_every_log_line_is_strict_json(sidecar):
    assert send(sidecar, "GET", "/healthz/live", b"", {})[0] == 200
    sidecar.drain()
    lines = 0
    for path in sidecar.state.writer.dir.glob(f"*{OPEN_SUFFIX}*"):
        records, skipped = serving_logs.parse_records(path.read_bytes())
        assert skipped == 0
        lines += len(records)
        for record in records:
            json.dumps(record, allow_nan=False)              # no NaN/Infinity survived
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(record, ensure_ascii=False))
    assert lines > 100
    assert sidecar.metric("flywheel_requests_total", {"model": MODEL_NAME, "code": "500"}) == 0
    print(f"fuzz: responses by status {dict(sorted(SEEN.items()))}; {lines} log records, all strict JSON; "
          f"{int(sidecar.metric('flywheel_observer_errors_total'))} records kept in short form")
