"""TF Serving API conformance: the same requests against the development model server and
against a real TF Serving, when one is given:
  - TF_SERVING_URL (REST, e.g. http://host:8501) and optionally TF_SERVING_GRPC (host:8500): a
    running server with a model with the default dataset's taxi features under TF_SERVING_MODEL (default
    taxi_tips); or
  - TF_SERVING_IMAGE: a TF Serving image (a name, pulled when not present, or an image archive
    for `docker load`), started here with serving/config and the serving pod's command line
    (serving/tf_serving.py) on the same fixture model as the development server.
Without either the real-server cases are skipped with that reason.
"""
from __future__ import annotations

import json
import math
import os
import urllib.request

import grpc
import pytest

from flywheel import model_repository, names
from serving import tf_serving as tf_serving_flags
from serving.grpc_client import GrpcClient
from serving.rest_client import RestClient, ServingError
from tests.support.containers import (docker_client_or_skip, ensure_image, published_port, run_container,
                                      wait_http, world_readable)
from tests.support.servers import MODEL_NAME, push_version
from tests.support.taxi_rows import make_frame, rows_of

REAL_MODEL = os.environ.get("TF_SERVING_MODEL", MODEL_NAME)


@pytest.fixture(scope="module")
def tf_serving(tmp_path_factory, exported_versions) -> tuple[str, str, str]:
    """(REST URL, gRPC target or "", model name) of a real TF Serving; see the module docstring."""
    if os.environ.get("TF_SERVING_URL"):
        yield os.environ["TF_SERVING_URL"], os.environ.get("TF_SERVING_GRPC", ""), REAL_MODEL
        return
    image = os.environ.get("TF_SERVING_IMAGE")
    if not image:
        pytest.skip("no real TF Serving to compare with: set TF_SERVING_URL (a running server) or TF_SERVING_IMAGE "
                    "(an image to start here); this machine has no TF Serving binary and reaches no image registry")
    client = docker_client_or_skip()
    image = ensure_image(client, image)
    repository = tmp_path_factory.mktemp("tf_serving") / "model_repository"
    push_version(exported_versions, repository, 1)
    model_repository.set_label(str(repository), MODEL_NAME, names.PRODUCTION, 1, "test")  # writes models.config
    world_readable(repository)
    container = run_container(
        client, image, entrypoint=["/usr/bin/tensorflow_model_server"], command=tf_serving_flags.command_line(),
        volumes={str(repository): {"bind": tf_serving_flags.MOUNTED_MODEL_REPOSITORY, "mode": "ro"},
                 str(tf_serving_flags.CONFIG_DIR): {"bind": tf_serving_flags.MOUNTED_CONFIG_DIR, "mode": "ro"}},
        ports={f"{tf_serving_flags.REST_PORT}/tcp": ("127.0.0.1", None),
               f"{tf_serving_flags.GRPC_PORT}/tcp": ("127.0.0.1", None)})
    try:
        rest_url = f"http://127.0.0.1:{published_port(container, f'{tf_serving_flags.REST_PORT}/tcp')}"
        wait_http(f"{rest_url}/v1/models/{MODEL_NAME}", container)
        yield rest_url, f"127.0.0.1:{published_port(container, f'{tf_serving_flags.GRPC_PORT}/tcp')}", MODEL_NAME
    finally:
        container.remove(force=True)
        client.close()


@pytest.fixture(params=["dev", "tf_serving"])
def rest(request) -> RestClient:
    if request.param == "dev":
        return RestClient(request.getfixturevalue("dev_server").rest_url, MODEL_NAME)
    url, _, model = request.getfixturevalue("tf_serving")
    return RestClient(url, model)


@pytest.fixture(params=["dev", "tf_serving"])
def grpc_client(request):
    if request.param == "dev":
        client = GrpcClient(request.getfixturevalue("dev_server").grpc_target, MODEL_NAME)
    else:
        _, target, model = request.getfixturevalue("tf_serving")
        if not target:
            pytest.skip("TF_SERVING_GRPC not set: no real TF Serving gRPC endpoint to compare with")
        client = GrpcClient(target, model)
    yield client
    client.close()


def raw_post(rest: RestClient, path_suffix: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(f"{rest.base_url}/v1/models/{path_suffix}", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


ROWS = rows_of(make_frame(5, seed=3))


def test_status_reports_available_version(rest):
    status = rest.status()["model_version_status"]
    assert status and status[0]["state"] == "AVAILABLE" and status[0]["status"]["error_code"] == "OK"
    version = int(status[0]["version"])
    assert rest.status(version)["model_version_status"][0]["version"] == str(version)


def test_metadata_describes_raw_named_inputs_and_score(rest):
    meta = rest.metadata()
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(signature["inputs"]) == set(ROWS[0])
    assert signature["inputs"]["payment_type"]["dtype"] == "DT_STRING"
    assert signature["inputs"]["fare"]["dtype"] == "DT_FLOAT"
    assert signature["inputs"]["trip_seconds"]["dtype"] == "DT_INT64"
    assert "score" in signature["outputs"]
    assert meta["model_spec"]["name"] == rest.model_name


def test_row_and_columnar_formats_agree(rest):
    rows = rest.predict_rows(ROWS)
    columns = rest.predict_columns({k: [r[k] for r in ROWS] for k in ROWS[0]})
    assert len(rows) == len(ROWS) and all(0.0 <= p <= 1.0 for p in rows)
    assert columns == pytest.approx(rows, abs=1e-6)


def test_specific_version_predicts(rest):
    version = rest.available_versions()[-1]
    assert rest.predict_rows(ROWS[:1], version=version) == pytest.approx(rest.predict_rows(ROWS[:1]), abs=1e-6)


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "JSON Parse error"),
    (b'{"foo": []}', "Missing 'inputs' or 'instances' key"),
    (json.dumps({"instances": [{"fare": 1.0}]}).encode(), "missing input"),
    (json.dumps({"instances": [dict(ROWS[0], fare="cheap")]}).encode(), "fare"),
    (json.dumps({"instances": [dict(ROWS[0], trip_seconds=[1, 2])]}).encode(), "trip_seconds"),
])
def test_bad_requests_get_400_with_tf_serving_error(rest, body, fragment):
    status, payload = raw_post(rest, f"{rest.model_name}:predict", body)
    assert status == 400
    assert set(payload) == {"error"} and fragment.lower() in payload["error"].lower()


def test_unknown_model_and_version_get_404(rest):
    status, payload = raw_post(rest, "no_such_model:predict", json.dumps({"instances": ROWS}).encode())
    assert status == 404 and "Servable not found" in payload["error"]
    status, payload = raw_post(rest, f"{rest.model_name}/versions/999999:predict", json.dumps({"instances": ROWS}).encode())
    assert status == 404 and "999999" in payload["error"]
    with pytest.raises(ServingError) as err:
        RestClient(rest.base_url, "no_such_model").status()
    assert err.value.status == 404


def test_grpc_predict_matches_rest(grpc_client, dev_server):
    columns = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    outputs = grpc_client.predict(columns)
    rest_scores = RestClient(dev_server.rest_url, MODEL_NAME).predict_rows(ROWS)
    if grpc_client.model_name == MODEL_NAME and dev_server.grpc_target == grpc_client.target:
        assert outputs["score"].tolist() == pytest.approx(rest_scores, abs=1e-6)
    assert outputs["score"].shape == (len(ROWS),) and all(0 <= s <= 1 and not math.isnan(s) for s in outputs["score"])


def test_grpc_model_status_and_errors(grpc_client):
    status = grpc_client.status()
    assert status and status[0][1] == "AVAILABLE"
    with pytest.raises(grpc.RpcError) as err:
        GrpcClient(grpc_client.target, "no_such_model").status()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        grpc_client.predict({"fare": [1.0]})
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_dev_server_exposes_tf_serving_style_metrics(dev_server):
    # TF Serving's own metric names (":tensorflow:serving:...") fail promtool's *lint* (colons, no
    # _total), so this checks that the exposition parses, not the naming.
    from prometheus_client.parser import text_string_to_metric_families
    RestClient(dev_server.rest_url, MODEL_NAME).predict_rows(ROWS)
    with urllib.request.urlopen(dev_server.rest_url + "/monitoring/prometheus/metrics", timeout=10) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    samples = {tuple(sorted(s.labels.items())): s.value for s in families[":tensorflow:serving:request_count"].samples}
    assert samples[(("model_name", MODEL_NAME), ("status", "OK"))] >= 1


@pytest.mark.parametrize("field, value, fragment", [
    ("trip_seconds", 2 ** 63, "out of range"),
    ("fare", 10 ** 400, "out of range"),
    ("payment_type", "\ud800", "not valid UTF-8"),
])
def test_dev_server_answers_out_of_range_values_with_a_json_400(dev_server, field, value, fragment):
    row = {**ROWS[0], field: value}
    body = json.dumps({"instances": [row]}).encode()   # ensure_ascii: the surrogate as \ud800
    status, answer = raw_post(RestClient(dev_server.rest_url, MODEL_NAME), f"{MODEL_NAME}:predict", body)
    assert status == 400 and fragment in answer["error"]


def test_dev_server_answers_non_finite_predictions_as_null(dev_server):
    import numpy as np

    from devserver.rest_api import _non_finite, format_outputs
    outputs = {"score": np.array([0.25, np.nan, np.inf], dtype=np.float32)}
    assert format_outputs(outputs, True) == {"predictions": [0.25, None, None]} and _non_finite(outputs) == 2
    # Whatever the model makes of a NaN feature, the answer is strict JSON.
    rows = [{**ROWS[0], "fare": float("nan")}, ROWS[1]]
    req = urllib.request.Request(f"{dev_server.rest_url}/v1/models/{MODEL_NAME}:predict",
                                 data=json.dumps({"instances": rows}).encode())   # NaN, as Python writes it
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    predictions = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))["predictions"]
    assert len(predictions) == 2 and predictions[1] is not None
