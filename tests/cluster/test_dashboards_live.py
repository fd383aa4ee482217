"""The Grafana dashboards and the alert rules on real data.

A real sidecar (`python -m monitoring`, subprocess) in front of a small TF Serving-compatible
upstream, a real Prometheus (Debian package) scraping it every second on loopback with the
alert rules loaded, traffic drawn from the training distribution and then, part-way, with
`trip_miles` tripled (and nothing else changed). Checks: every panel query of both dashboards
returns data; the drift panel rises above the threshold for trip_miles and stays below it for
every other feature; the feature-drift alert goes pending for trip_miles only; the drift
panels render to a PNG.

The upstream is small on purpose (a few lines of aiohttp answering TF Serving's model-status
and :predict REST calls): a real SavedModel would add a TensorFlow import and an export to the
run time and change nothing the dashboards read. The baseline files are real TFDV output.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.support.cluster import ROOT, require_tool
from flywheel import names, params
from tests.support.app_thread import AppThread
from tests.support.bundles import train_versions
from tests.support.taxi_rows import LABEL, make_frame, rows_of

MODEL = names.DEFAULT_MODEL_NAME
SHIFTED = "trip_miles"
# params.yaml monitoring.drift_jsd / drift_linf, the thresholds on the dashboard and in the alert
JSD_THRESHOLD = params.load().monitoring.drift_jsd
LINF_THRESHOLD = params.load().monitoring.drift_linf
DASHBOARDS = ROOT / "monitoring/dashboards"
SCRAPE_S = 1
WINDOW_ROWS = 400
ROWS_PER_REQUEST = 20


def _render_module():
    spec = importlib.util.spec_from_file_location("flywheel_render_png", DASHBOARDS / "render_png.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


render_png = _render_module()


def score(row: dict) -> float:
    """The small upstream's model: a fixed logistic function of two features."""
    z = 1.2 * (row.get("payment_type") == "Credit Card") - 0.8 + 0.02 * float(row.get("fare") or 0.0)
    return 1.0 / (1.0 + math.exp(-z))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # not up yet
            last = err
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def http_json(url: str, payload=None, raw: bytes | None = None) -> tuple[int, dict, dict]:
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"{}")


# --- the model repository: a version the pipeline's own steps trained and pushed ------------
def write_model_repository(root: Path) -> Path:
    versions = train_versions(root, [make_frame(3000, seed=1)], MODEL, LABEL)
    return versions[1].parent.parent


class SmallUpstream:
    """TF Serving's REST model-status and :predict calls for one model, version 1, on loopback."""

    def __init__(self):
        from aiohttp import web

        async def status(request):
            return web.json_response({"model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})

        async def predict(request):
            try:
                body = json.loads(await request.read())
            except ValueError as err:  # as TF Serving answers a body that is not JSON
                return web.json_response({"error": f"JSON Parse error: {err}"}, status=400)
            return web.json_response({"predictions": [score(r) for r in body["instances"]]})

        async def metrics(request):  # TF Serving's own Prometheus endpoint, minimal
            return web.Response(text=":tensorflow:serving:request_count{model_name=\"%s\"} 1\n" % MODEL)

        self.port = free_port()
        app = web.Application()
        app.router.add_get(f"/v1/models/{MODEL}", status)
        app.router.add_post(f"/v1/models/{MODEL}:predict", predict)
        app.router.add_get("/monitoring/prometheus/metrics", metrics)
        self.server = AppThread(app, self.port, timeout=20, what="small upstream")

    def stop(self):
        self.server.stop(20)


def prometheus_config(sidecar_port: int, upstream_port: int) -> str:
    """Scrape labels as the ServiceMonitor gives them (job = metrics Service, endpoint = port name)."""
    rules = ROOT / "monitoring/rules/flywheel-alerts.rules.yml"
    target = {"namespace": "flywheel", "pod": "flywheel-serving-test", "service": "flywheel-serving-metrics"}
    return json.dumps({
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "flywheel-serving-metrics", "metrics_path": "/metrics",
             "static_configs": [{"targets": [f"127.0.0.1:{sidecar_port}"], "labels": {**target, "endpoint": "http"}}]},
            {"job_name": "flywheel-serving-metrics-tfs", "metrics_path": "/monitoring/prometheus/metrics",
             "static_configs": [{"targets": [f"127.0.0.1:{upstream_port}"], "labels": {**target, "endpoint": "tfs-rest"}}]},
        ]})


class Stack:
    def __init__(self, tmp: Path):
        self.procs: list[subprocess.Popen] = []
        self.upstream = None
        self.tmp = tmp

    def start(self) -> None:
        """Upstream, sidecar, Prometheus; the caller stops whatever started, also on failure."""
        require_tool("prometheus", "run `make system-deps` (Debian package prometheus)")
        tmp = self.tmp
        repository = write_model_repository(tmp / "model_repository")
        self.upstream = SmallUpstream()
        self.sidecar_port = free_port()
        self.sidecar = f"http://127.0.0.1:{self.sidecar_port}"
        self._start([sys.executable, "-m", "monitoring", "--host", "127.0.0.1", "--port", str(self.sidecar_port),
                     "--upstream", f"http://127.0.0.1:{self.upstream.port}", "--model-repository", str(repository),
                     "--model-name", MODEL, "--log-dir", str(tmp / "prediction_log"),
                     "--window-rows", str(WINDOW_ROWS), "--version-poll-s", "0.5"], tmp / "sidecar.log", cwd=ROOT)
        try:
            wait_until(lambda: http_json(f"{self.sidecar}/healthz/ready")[0] == 200, 60, "sidecar ready")
        except AssertionError:
            raise AssertionError("sidecar not ready:\n" + (tmp / "sidecar.log").read_text()[-3000:]) from None
        prom_port = free_port()
        self.prometheus = f"http://127.0.0.1:{prom_port}"
        config = tmp / "prometheus.yml"
        config.write_text(prometheus_config(self.sidecar_port, self.upstream.port))
        self._start(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], tmp / "prometheus.log", cwd=tmp)
        wait_until(lambda: all(t["health"] == "up" for t in self.targets()) and len(self.targets()) == 2,
                   60, "Prometheus scraping both targets")

    def _start(self, args: list[str], log: Path, cwd: Path):
        self.procs.append(subprocess.Popen(args, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT))

    def targets(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.prometheus}/api/v1/targets", timeout=5) as resp:
            return json.load(resp)["data"]["activeTargets"]

    def stop(self):
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.upstream is not None:
            self.upstream.stop()

    # --- traffic --------------------------------------------------------------------------------
    def predict(self, frame: pd.DataFrame) -> str:
        rows = json.loads(frame.drop(columns=[LABEL]).to_json(orient="records"))
        status, headers, body = http_json(f"{self.sidecar}/v1/models/{MODEL}:predict", {"instances": rows})
        assert status == 200, body
        return headers["X-Request-Id"]

    def feedback(self, request_id: str, labels: list[int]) -> None:
        """Ground truth for a logged request; the observer logs after the response, so retry briefly."""
        def joined():
            status, _, body = http_json(f"{self.sidecar}/v1/feedback", {"request_id": request_id, "labels": labels})
            assert status in (200, 404), body
            return status == 200
        wait_until(joined, 10, f"feedback for {request_id} to join")

    def send_phase(self, frame: pd.DataFrame, seconds: float) -> None:
        """Spread the frame's rows over `seconds`; feedback for each request one request later."""
        chunks = [frame.iloc[i:i + ROWS_PER_REQUEST] for i in range(0, len(frame), ROWS_PER_REQUEST)]
        pause = seconds / len(chunks)
        previous = None
        for i, chunk in enumerate(chunks):
            if i % 5 == 0:  # a steady trickle of rows that break the schema (~1 % of rows)
                self.send_odd_row(seed=i)
            request_id = self.predict(chunk)
            if previous is not None:
                self.feedback(*previous)
            previous = (request_id, chunk[LABEL].tolist())
            time.sleep(pause)
        self.feedback(*previous)

    def send_odd_row(self, seed: int) -> None:
        """One row with a category outside the schema's domain and a feature the schema lacks."""
        row = rows_of(make_frame(1, seed=1000 + seed))[0]
        odd = dict(row, payment_type="Bitcoin", surge_multiplier=1.5)
        assert http_json(f"{self.sidecar}/v1/models/{MODEL}:predict", {"instances": [odd]})[0] == 200

    def send_bad_json(self) -> None:
        status, _, _ = http_json(f"{self.sidecar}/v1/models/{MODEL}:predict", raw=b"{not json")
        assert status == 400


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("dashboards_live"))
    try:
        stack.start()
        stack.start_time = time.time()
        stack.send_phase(make_frame(WINDOW_ROWS * 2, seed=3), seconds=8)
        stack.send_bad_json()
        stack.shift_time = time.time()
        shifted = make_frame(WINDOW_ROWS * 2, seed=4)
        shifted[SHIFTED] = shifted[SHIFTED] * 3.0          # the drift: one feature, nothing else
        stack.send_phase(shifted, seconds=8)
        time.sleep(3 * SCRAPE_S)                           # last samples scraped, rules evaluated
        stack.end_time = time.time()
        yield stack
    finally:
        stack.stop()


def _variables() -> dict[str, str]:
    return {"namespace": "flywheel", "model": MODEL, "datasource": "prometheus",
            "__rate_interval": f"{4 * SCRAPE_S + 1}s"}


@pytest.mark.parametrize("dashboard", ["flywheel-drift.json", "flywheel-serving.json"])
def test_every_panel_query_returns_data(stack, dashboard):
    queries = render_png.panel_queries(render_png.load_dashboard(DASHBOARDS / dashboard), _variables())
    assert len(queries) >= 8
    empty = []
    for q in queries:
        if q.instant:
            result = render_png.query_instant(stack.prometheus, q.expr, stack.end_time)
        else:
            result = [s for s in render_png.query_range(stack.prometheus, q.expr, stack.start_time,
                                                        stack.end_time, SCRAPE_S) if s["values"]]
        if not result:
            empty.append(f"{q.panel}: {q.expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def _panel_series(stack: Stack, title_start: str) -> dict[str, list[tuple[float, float]]]:
    dashboard = render_png.load_dashboard(DASHBOARDS / "flywheel-drift.json")
    (query,) = [q for q in render_png.panel_queries(dashboard, _variables()) if q.panel.startswith(title_start)]
    series = render_png.query_range(stack.prometheus, query.expr, stack.start_time, stack.end_time, SCRAPE_S)
    return {s["metric"]["feature"]: s["values"] for s in series}


def _final(values: list[tuple[float, float]], stack: Stack) -> list[float]:
    return [v for t, v in values if t > stack.end_time - 2 * SCRAPE_S]


def test_drift_panel_rises_for_the_shifted_feature_only(stack):
    numeric = _panel_series(stack, "Feature drift over time: numeric")
    categorical = _panel_series(stack, "Feature drift over time: categorical")
    assert set(numeric) == {"trip_start_timestamp", "trip_miles", "trip_seconds", "fare", "passenger_count",
                            "pickup_area"}, sorted(numeric)
    assert set(categorical) == {"payment_type", "company"}, sorted(categorical)
    before = [v for t, v in numeric[SHIFTED] if t < stack.shift_time]
    assert before and max(before) < JSD_THRESHOLD, before
    assert _final(numeric[SHIFTED], stack) and min(_final(numeric[SHIFTED], stack)) > JSD_THRESHOLD
    print("drift panels at the end: " + ", ".join(f"{f}={v[-1][1]:.3f}" for f, v in sorted({**numeric, **categorical}.items())))
    for panel, threshold in ((numeric, JSD_THRESHOLD), (categorical, LINF_THRESHOLD)):
        for feature, values in panel.items():
            if feature != SHIFTED:
                final = _final(values, stack)
                assert final and max(final) < threshold, f"{feature} drifted without a shift: {final}"
    # "which features drift now": only the shifted one at or above its threshold
    now = _panel_series(stack, "Features drifting now")
    assert {f for f, values in now.items() if max(_final(values, stack)) >= 1} == {SHIFTED}


def test_feature_drift_alert_goes_pending_for_the_shifted_feature_only(stack):
    alerts = render_png.query_instant(stack.prometheus, 'ALERTS{alertname="FlywheelFeatureDriftSustained"}',
                                      stack.end_time)
    assert {a["metric"]["feature"] for a in alerts} == {SHIFTED}
    assert {a["metric"]["alertstate"] for a in alerts} == {"pending"}  # `for: 15m` not yet elapsed


def test_schema_anomaly_panel_shows_each_kind_sent(stack):
    dashboard = render_png.load_dashboard(DASHBOARDS / "flywheel-drift.json")
    (query,) = [q for q in render_png.panel_queries(dashboard, _variables()) if q.panel == "Schema anomalies"]
    series = render_png.query_range(stack.prometheus, query.expr, stack.start_time, stack.end_time, SCRAPE_S)
    seen = {(s["metric"]["feature"], s["metric"]["kind"]) for s in series if any(v > 0 for _, v in s["values"])}
    assert seen == {("payment_type", "out_of_domain"), ("__unknown__", "unknown")}


def test_grafana_variables_resolve_on_the_scraped_labels(stack):
    """The namespace and model variables (label_values queries) find the values the panels use."""
    for dashboard in ("flywheel-drift.json", "flywheel-serving.json"):
        variables = {v["name"]: v for v in render_png.load_dashboard(DASHBOARDS / dashboard)["templating"]["list"]}
        for name, expected in (("namespace", "flywheel"), ("model", MODEL)):
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", variables[name]["query"]["query"])
            selector = render_png.expand(m.group(1), {"namespace": "flywheel"})
            url = (f"{stack.prometheus}/api/v1/label/{m.group(2)}/values?"
                   + urllib.parse.urlencode({"match[]": selector}))
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert json.load(resp)["data"] == [expected], f"{dashboard} ${name}"


@pytest.mark.parametrize("dashboard", ["flywheel-drift.json", "flywheel-serving.json"])
def test_dashboards_render_to_png(stack, tmp_path, dashboard):
    # `make dashboards-png` without PROMETHEUS_URL sets FLYWHEEL_PNG_DIR to keep these pictures.
    out_dir = Path(os.environ.get("FLYWHEEL_PNG_DIR") or tmp_path)
    out = render_png.render(render_png.load_dashboard(DASHBOARDS / dashboard), stack.prometheus,
                            stack.start_time, stack.end_time, out_dir / dashboard.replace(".json", ".png"),
                            {"namespace": "flywheel", "model": MODEL}, step=SCRAPE_S)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
