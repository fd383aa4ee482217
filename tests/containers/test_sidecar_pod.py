"""The sidecar image beside a model server container, wired as the serving pod wires them
(manifests/base/serving-deployment.yaml): one network namespace, so the image's own default
command reaches the model server at 127.0.0.1:8501; the model repository mounted read-only at
/models; a read-only root filesystem with writable /tmp and /var/log/flywheel (emptyDirs in the
pod); no capabilities, no privilege escalation.

The model server container is the development model server (devserver/, a stand-in for TF
Serving, which no registry here can provide) run from the component image, which has
TensorFlow; devserver/ is mounted in, since no image ships it. The model is a real Keras
SavedModel with TFDV baseline statistics, trained and pushed by the pipeline's own steps
(tests/serving/conftest.py).
"""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from flywheel import names
from tests.support.containers import exec_output, published_port, run_container, wait_http, world_readable
from tests.support.servers import push_version
from tests.support.taxi_rows import FEATURES, make_frame, rows_of

from tests.support.containers import ROOT

MODEL = names.DEFAULT_MODEL_NAME
SIDECAR_PORT, REST_PORT = "8080/tcp", "8501/tcp"
ROWS = rows_of(make_frame(200, seed=5))
POD_SECURITY = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "read_only": True}


def post(url: str, payload: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read()), dict(response.headers)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def pod(docker_client, images, exported_versions, tmp_path_factory):  # noqa: F811
    repository = tmp_path_factory.mktemp("pod") / "model_repository"
    push_version(exported_versions, repository, 1)
    world_readable(repository)
    models = {str(repository): {"bind": "/models", "mode": "ro"}}
    # The pod's network namespace belongs to the model server; ports published on loopback only.
    server = run_container(
        docker_client, images["component"],
        command=["python3", "-m", "devserver", "--rest-port", "8501", "--grpc-port", "8500",
                 "--model-repository", "/models", "--model-name", MODEL, "--poll-seconds", "1"],
        volumes={**models, str(ROOT / "devserver"): {"bind": "/opt/devserver/devserver", "mode": "ro"}},
        environment={"PYTHONPATH": "/opt/devserver"}, tmpfs={"/tmp": ""},
        ports={SIDECAR_PORT: ("127.0.0.1", None), REST_PORT: ("127.0.0.1", None)}, **POD_SECURITY)
    # The sidecar with the image's own ENTRYPOINT and CMD: nothing overridden but the mounts.
    sidecar = None
    try:
        sidecar = run_container(docker_client, images["sidecar"], network_mode=f"container:{server.id}",
                                volumes=models, tmpfs={"/tmp": "", "/var/log/flywheel": "mode=1777"},
                                **POD_SECURITY)
        rest = f"http://127.0.0.1:{published_port(server, REST_PORT)}"
        url = f"http://127.0.0.1:{published_port(server, SIDECAR_PORT)}"
        wait_http(f"{rest}/v1/models/{MODEL}", server)
        wait_http(f"{url}/healthz/ready", sidecar)
        yield {"server": server, "sidecar": sidecar, "rest": rest, "url": url}
    finally:
        for container in (sidecar, server):
            if container is not None:
                container.remove(force=True)


def test_sidecar_runs_as_10001_on_a_read_only_root_without_tensorflow(pod):
    sidecar = pod["sidecar"]
    sidecar.reload()
    assert sidecar.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert sidecar.attrs["Config"]["User"] == "10001:10001"  # from the image, not from this test
    code, status = exec_output(sidecar, ["cat", "/proc/1/status"])
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert code == 0 and set(uids) == {"10001"}, status
    code, out = exec_output(sidecar, ["cat", "/proc/1/cmdline"])
    assert out.split("\0")[:3] == ["python3", "-m", "monitoring"]
    code, out = exec_output(sidecar, ["touch", "/home/flywheel/x"])
    assert code != 0 and "Read-only file system" in out
    code, out = exec_output(sidecar, ["python3", "-c", "import importlib.util as u; "
                                      "print([m for m in ('tensorflow', 'tensorflow_data_validation', 'apache_beam') "
                                      "if u.find_spec(m)])"])
    assert code == 0 and out.strip() == "[]", out


def test_predictions_pass_through_the_sidecar_unchanged(pod):
    payload = {"instances": ROWS[:20]}
    status, proxied, headers = post(f"{pod['url']}/v1/models/{MODEL}:predict", payload)
    _, direct, _ = post(f"{pod['rest']}/v1/models/{MODEL}:predict", payload)
    assert status == 200 and headers.get("X-Request-Id")
    assert proxied == direct
    assert len(proxied["predictions"]) == 20 and all(0.0 <= p <= 1.0 for p in proxied["predictions"])


def scrape(url: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in get(f"{url}/metrics").splitlines()
            if line and not line.startswith("#")}


def test_metrics_and_the_prediction_log_show_the_traffic(pod):
    for start in range(0, len(ROWS), 50):
        assert post(f"{pod['url']}/v1/models/{MODEL}:predict", {"instances": ROWS[start:start + 50]})[0] == 200
    model = f'model="{MODEL}"'
    window = f"flywheel_drift_window_rows{{{model}}}"
    deadline = time.monotonic() + 30  # the sidecar observes off the response path
    while (samples := scrape(pod["url"])).get(window, 0) < len(ROWS) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert samples[window] >= len(ROWS)
    assert samples[f'flywheel_requests_total{{code="200",{model}}}'] >= 4
    assert samples[f"flywheel_upstream_up{{{model}}}"] == 1
    assert samples[f"flywheel_baseline_loaded{{{model}}}"] == 1
    assert samples[f"flywheel_model_version{{{model}}}"] == 1
    drift = {key for key in samples if key.startswith("flywheel_feature_drift{")}
    labels = {part for key in drift for part in key.split("{", 1)[1].rstrip("}").split(",")}
    # a time feature is compared on its cyclical parts, never per value
    plain = {feature for feature in FEATURES if feature != "trip_start_timestamp"}
    assert {f'feature="{feature}"' for feature in plain} <= labels, sorted(drift)
    assert any(label.startswith('feature="trip_start_timestamp:') for label in labels), sorted(drift)
    # the prediction log, on the writable /var/log/flywheel: every row of every request
    code, out = exec_output(pod["sidecar"], ["python3", "-c", (
        "import glob, json; print(sum(len(json.loads(line)['features'])"
        " for path in glob.glob('/var/log/flywheel/*.jsonl') for line in open(path)))")])
    assert code == 0 and int(out.strip()) >= len(ROWS), out
