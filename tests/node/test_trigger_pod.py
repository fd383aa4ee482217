"""The loop closed on real pods: predictions through the serving Service, their ground truth posted
to the sidecars' feedback port with the bearer token `make deploy` generates, the prediction logs
shipped to the model repository as the pods stop (a rollout restart); then a real Alertmanager
routes a drift alert to the trigger's Service, and the trigger pod joins the logs into a labeled
span on the volume and submits a run of the compiled pipeline to KFP's API server (beside the
control plane, reached from the pod on the host's link address, as the manifests' Secret names
it). This test reads the submission back (arguments, Workflow); the run's execution on the node
is test_kfp_run.py's subject. The trigger's package mounts no volume, so its run stops at ingest
here (the span is on the serving pods' volume, not the pipeline's).
"""
from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request

import pytest

from controlplane import kfp
from flywheel import serving_logs, serving_protocol
from flywheel.loopback import wait_until
from pipelines import remote
from pipelines.loop_stack import Alertmanager
from tests.support.node_overlay import (MODEL, NAMESPACE, POD_UID, SERVING, pods, service_url,
                                        set_trigger_kfp_host)
from tests.support.taxi_rows import LABEL, make_frame, rows_of

TRIGGER = "flywheel-trigger"
ALERT = "FlywheelPredictionDrift"   # one of params.yaml trigger.alerts
ROWS = 600                          # above params.yaml trigger.min_labeled_rows (500)
BATCH = 60
FEEDBACK_PORT = 8081                # the Service's feedback port
ROLLOUT_S = 300


def post(url: str, payload: dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def restart(plane, deployment: str) -> None:
    plane.kubectl("rollout", "restart", f"deployment/{deployment}", "-n", NAMESPACE)
    plane.kubectl("rollout", "status", f"deployment/{deployment}", "-n", NAMESPACE, f"--timeout={ROLLOUT_S}s",
                  timeout=ROLLOUT_S + 30)


def cluster_ip(plane, service: str) -> str:
    return json.loads(plane.kubectl("get", "service", service, "-n", NAMESPACE, "-o", "json").stdout)["spec"]["clusterIP"]


@pytest.fixture(scope="module")
def labeled(deployed):
    """ROWS predictions and their labels through the Services, the logs shipped."""
    plane = deployed["plane"]
    frame = make_frame(ROWS, seed=21)
    base = service_url(plane)
    feedback_url = f"http://{cluster_ip(plane, SERVING)}:{FEEDBACK_PORT}/v1/feedback"
    auth = {"Authorization": f"Bearer {deployed['token']}"}
    answers = []
    for start in range(0, ROWS, BATCH):
        batch = frame.iloc[start:start + BATCH]
        status, body, headers = post(base + serving_protocol.predict_path(MODEL), {"instances": rows_of(batch)})
        assert status == 200 and len(body["predictions"]) == len(batch)
        request_id = headers["X-Request-Id"]
        payload = {"request_id": request_id, "labels": batch[LABEL].tolist()}
        # The Secret's token reaches the sidecars' volume within kubelet's sync: until then 503.
        status, body, _ = wait_until(lambda: (lambda a: a if a[0] != 503 else None)(post(feedback_url, payload, auth)),
                                     120, "feedback accepted with the token")
        answers.append((status, body))
    assert {status for status, _ in answers} <= {200, 202}, answers
    assert post(feedback_url, payload)[0] == 401   # no token, no feedback
    served_by = {p["metadata"]["name"] for p in pods(plane)}
    restart(plane, SERVING)   # each stopping sidecar closes and ships its log
    root = serving_logs.logs_root(str(deployed["repository"]), MODEL)
    wait_until(lambda: {pod for pod in served_by if any(
        f.rsplit("/", 1)[-1].startswith(pod + "-") for f in serving_logs.list_files(root, serving_logs.LOGGED_PREDICTIONS_DIR))}
        == served_by, 60, "every stopped pod's prediction log shipped")
    return deployed


@pytest.fixture(scope="module")
def kfp_host(labeled, kfp_backend):
    """KFP's API server (conftest.py), and the trigger pod restarted to read its endpoint from the Secret."""
    plane, host = labeled["plane"], kfp_backend["host"]
    set_trigger_kfp_host(plane, host)
    restart(plane, TRIGGER)
    return host


@pytest.fixture(scope="module")
def alerted(labeled, kfp_host, tmp_path_factory):
    plane = labeled["plane"]
    trigger = f"http://{cluster_ip(plane, TRIGGER)}:9095"
    wait_until(lambda: urllib.request.urlopen(f"{trigger}/healthz", timeout=5).status == 200, 60,
               "the trigger's Service")
    alertmanager = Alertmanager(tmp_path_factory.mktemp("alertmanager"), f"{trigger}/api/v1/alerts")
    try:
        alertmanager.post_alerts([{"labels": {"alertname": ALERT, "model": MODEL, "namespace": NAMESPACE},
                                   "annotations": {"summary": "prediction drift on real pods"}}])
        client = remote.client(kfp_host)

        def runs():
            found = client.list_runs(page_size=100).runs or []
            return [r for r in found if r.display_name.startswith(f"flywheel-{ALERT}-")]
        (run,) = wait_until(runs, 180, "a run on KFP's API server started by the trigger pod",
                            detail=lambda: "\n" + plane.kubectl("logs", f"deployment/{TRIGGER}", "-n", NAMESPACE,
                                                                check=False).stdout[-3000:])
        status = json.loads(urllib.request.urlopen(f"{trigger}/status", timeout=10).read())
    finally:
        alertmanager.stop()
    return {**labeled, "run": run, "status": status, "kfp_host": kfp_host}


def test_the_trigger_pod_submits_a_run_on_an_alert_from_alertmanager(alerted):
    run, plane = alerted["run"], alerted["plane"]
    parameters = run.runtime_config.parameters
    assert parameters["trigger"]["alert"] == ALERT and parameters["trigger"]["kind"] == "alert"
    assert parameters["trigger"]["labels"]["model"] == MODEL
    assert parameters["trigger"]["submitted_to"] == alerted["kfp_host"]
    assert parameters["push"]["model_repository"] == "/models"   # the trigger pod's mount of the repository
    stored = json.loads(plane.kubectl("get", "workflows", "-n", kfp.NAMESPACE, "-l", f"pipeline/runid={run.run_id}",
                                      "-o", "json").stdout)["items"]
    assert len(stored) == 1
    started = [e for e in alerted["status"]["events"] if e.get("event") == "run_started"]
    assert [e["run_id"] for e in started] == [run.run_id]


def test_the_span_the_run_trains_on_holds_the_labeled_rows(alerted):
    data_path = alerted["run"].runtime_config.parameters["data_path"]
    assert data_path.startswith(f"/models/{MODEL}/spans/")
    span = alerted["repository"] / data_path[len("/models/"):]
    assert span.stat().st_uid == POD_UID   # written by the trigger pod
    with span.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= ROWS and {row[LABEL] for row in rows} == {"0", "1"}
