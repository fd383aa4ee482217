"""`make loop`: the whole flywheel on this machine, on loopback.

Serve the model's production version (development model server + monitoring sidecar); replay a
shifted span through the sidecar as traffic, posting each request's ground truth back a moment
later; a real Prometheus evaluates Flywheel's alert rules (shortened windows: params.yaml
`loop:`), a real Alertmanager routes the firing drift alert to the trigger service, which builds
the labeled span from the serving logs and runs the training pipeline with the alert as its
trigger; the new version is blessed, pushed and hot-reloaded, and with more of the same traffic
the drift gauges fall. It ends with each stage's time and a PNG timeline (drift, alert state,
served version, the trigger's events).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flywheel import model_repository as repo
from flywheel import options
from flywheel import params as params_module
from flywheel import http_client, metric_names, serving_protocol, storage
from pipelines import console, loop_stack
from pipelines.loop_stack import Alertmanager, Prometheus, free_port, python, wait_for

NAMESPACE = "flywheel-loop"
DRIFT = metric_names.FLEET_FEATURE_DRIFT


@dataclasses.dataclass
class LoopResult:
    started: float
    marks: dict = dataclasses.field(default_factory=dict)     # milestone -> unix time
    served_before: int | None = None
    new_version: int | None = None
    alert: str = ""
    span: str = ""
    timeline: str = ""
    events: list = dataclasses.field(default_factory=list)    # the trigger's events
    error: str = ""

    def at(self, name: str) -> float | None:
        return self.marks[name] - self.started if name in self.marks else None

    def lines(self) -> list[str]:
        out = [f"{'stage':<34} {'at':>7} {'took':>7}"]
        previous = 0.0
        for name, when in sorted(self.marks.items(), key=lambda kv: kv[1]):
            t = when - self.started
            out.append(f"{name:<34} {t:6.1f}s {t - previous:6.1f}s")
            previous = t
        latency = (self.marks.get("run started") or 0) - (self.marks.get("alert firing") or 0)
        if "run started" in self.marks and "alert firing" in self.marks:
            out.append(f"alert firing -> run started: {latency:.1f}s")
        out.append(f"served v{self.served_before} -> v{self.new_version}; trigger {self.alert or '-'}; span {self.span or '-'}")
        if self.timeline:
            out.append(f"timeline: {self.timeline}")
        if self.error:
            out.append(f"error: {self.error}")
        return out


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    answer = http_client.post_json(url, body, headers=headers, timeout_s=30)
    if not answer.ok:
        return answer.status, serving_protocol.error_body(answer.body[:300].decode(errors="replace"))
    return answer.status, answer.json()


def traffic_rows(path: str, label: str, limit: int, features: list[str]) -> tuple[list[dict], list]:
    """Rows of a span as a client sends them (the model's features as JSON, nulls for missing
    values) and their labels."""
    import pandas as pd

    frame = pd.read_csv(path, nrows=limit or None)
    missing = [c for c in [label, *features] if c not in frame.columns]
    if missing:
        raise RuntimeError(f"{path} has no column(s) {missing} (columns {list(frame.columns)[:12]})")
    # A client sends complete rows: TF Serving takes no nulls (the training data has gaps; the
    # rows with one are left out of the traffic).
    frame = frame.dropna(subset=features)
    rows = json.loads(frame[features].to_json(orient="records"))
    return rows, frame[label].tolist()


class Client:
    """Predictions through the sidecar; each request's labels posted as feedback after a delay."""

    def __init__(self, sidecar: str, model_name: str, feedback_delay_s: float, prefix: str):
        self.predict = sidecar + serving_protocol.predict_path(model_name)
        self.feedback = sidecar + serving_protocol.FEEDBACK_PATH
        self.delay, self.prefix = feedback_delay_s, prefix
        self.sent = self.failed = self.labeled = 0
        self.last_error = ""
        self.timers: list[threading.Timer] = []

    def _one(self, i: int, rows: list[dict], labels: list | None) -> None:
        request_id = f"{self.prefix}-{i}"
        status, body = _post(self.predict, {"instances": rows}, {"X-Request-Id": request_id})
        if status != 200:
            self.failed += 1
            self.last_error = f"{status} {body}"
            return
        self.sent += 1
        if labels is not None:
            timer = threading.Timer(self.delay, self._label, (request_id, labels))
            timer.start()
            self.timers.append(timer)

    def _label(self, request_id: str, labels: list) -> None:
        status, _ = _post(self.feedback, {"request_id": request_id, "labels": labels})
        self.labeled += status in (200, 202)

    def replay(self, rows: list[dict], labels: list | None, per_request: int, start: int = 0) -> None:
        batches = [(start + i, rows[j:j + per_request], labels[j:j + per_request] if labels else None)
                   for i, j in enumerate(range(0, len(rows), per_request))]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda b: self._one(*b), batches))
        for timer in self.timers:
            timer.join()
        self.timers = []


def _metric(url: str, name: str, labels: dict | None = None) -> list[float]:
    """Values of one metric in a /metrics page (text format), filtered by labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = http_client.get(url, timeout_s=5).decode()
    return [s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items())]


def draw_timeline(prometheus: Prometheus, result: LoopResult, path: str, model_name: str) -> str:
    """Drift (materiality per feature), the retraining alerts' state and the served version over
    the loop, with its milestones."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, end = result.started, time.time()
    step = max(1.0, (end - start) / 400)

    def series(expr: str) -> list[tuple[dict, list, list]]:
        out = []
        for s in prometheus.query_range(expr, start, end, step):
            xs = [float(t) - start for t, _ in s["values"]]
            out.append((s["metric"], xs, [float(v) for _, v in s["values"]]))
        return out

    fig, axes = plt.subplots(3, 1, figsize=(12, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.1]})
    drift_ax, alert_ax, version_ax = axes
    for labels, xs, ys in series(f'{DRIFT}{{measure="materiality"}}'):
        drift_ax.plot(xs, ys, label=labels.get("feature", "?"), linewidth=1.2)
    drift_ax.axhline(1.0, color="#b91c1c", linestyle=":", linewidth=1)
    drift_ax.set_ylabel("drift effect / threshold\n(fleet, per feature)")
    drift_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="feature", title_fontsize=7)
    alerts = sorted(series('max by (alertname, alertstate) (ALERTS{alertname=~"Flywheel.*"})'),
                    key=lambda s: (s[0]["alertname"], s[0].get("alertstate", "")))
    names = sorted({labels["alertname"] for labels, _, _ in alerts})
    for labels, xs, ys in alerts:   # each alert a little apart, so overlapping states stay visible
        level = (2 if labels.get("alertstate") == "firing" else 1) + 0.08 * names.index(labels["alertname"])
        alert_ax.step(xs, [level * y for y in ys], where="post", label=f"{labels['alertname']} {labels['alertstate']}")
    alert_ax.set_yticks([0, 1, 2], ["-", "pending", "firing"])
    alert_ax.set_ylim(-0.2, 2.6)
    alert_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for _, xs, ys in series(f'max({metric_names.MODEL_VERSION}{{model="{model_name}"}})'):
        version_ax.step(xs, ys, where="post", color="#1d4ed8")
    version_ax.yaxis.get_major_locator().set_params(integer=True)
    version_ax.set_ylabel("served version")
    version_ax.set_xlabel("seconds since the loop started")
    milestones = sorted(result.marks.items(), key=lambda kv: kv[1])
    for number, (name, when) in enumerate(milestones, 1):
        for ax in axes:
            ax.axvline(when - start, color="#6b7280", linewidth=0.6, linestyle="--")
        drift_ax.annotate(str(number), (when - start, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                          xytext=(0, 2 + 8 * (number % 2)), textcoords="offset points", ha="center", va="bottom",
                          color="#374151")
    version_ax.text(1.01, 1.0, "\n".join(f"{n}  {when - start:5.1f}s  {name}" for n, (name, when) in
                                         enumerate(milestones, 1)),
                    transform=version_ax.transAxes, fontsize=6.5, va="top", family="monospace")
    fig.suptitle(f"Flywheel loop: {model_name} v{result.served_before} -> v{result.new_version} "
                 f"(trigger: {result.alert or 'none'})", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(repository: str, model_name: str, traffic: str, label: str, params: params_module.Params, work: Path,
        run_sets: tuple[str, ...] = (), span_dir: str = "", progress=print,
        params_file: str | Path = params_module.PARAMS_FILE) -> LoopResult:
    """The loop; raises RuntimeError when a stage does not happen within loop.timeout_s. The model
    server, the sidecar, the trigger and the runs it starts all read `params_file`; `params` is
    that file with the caller's loop.* overrides."""
    lp = params.loop
    work = work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    repository = storage.absolute(repository)
    served = repo.production_version(repository, model_name)
    if served is None:
        raise RuntimeError(f"no version of {model_name} pushed under {repository}: run `make run` first")
    result = LoopResult(started=time.time(), served_before=served)
    from flywheel import bundle

    features = list(bundle.read_metadata(repo.version_dir(repository, model_name, served))["features"])
    rows, labels = traffic_rows(traffic, label, lp.traffic_rows, features)
    processes = []
    settings = ["--params", str(Path(params_file).absolute())]

    def mark(name: str) -> None:
        result.marks[name] = time.time()
        progress(f"  {time.time() - result.started:6.1f}s  {name}")

    try:
        rest, grpc, sidecar_port, trigger_port = free_port(), free_port(), free_port(), free_port()
        devserver = python("model server", ["-m", "devserver", "--host", "127.0.0.1", "--rest-port", str(rest),
                                            "--grpc-port", str(grpc), "--model-repository", repository,
                                            "--model-name", model_name, "--poll-seconds", "0.5", *settings],
                           work / "model_server.log")
        processes.append(devserver)
        sidecar = python("sidecar", ["-m", "monitoring", "--port", str(sidecar_port),
                                     "--upstream", f"http://127.0.0.1:{rest}", "--model-repository", repository,
                                     "--model-name", model_name, "--pod", "loop-sidecar",
                                     "--log-dir", str(work / "prediction_log"),
                                     "--fleet-interval-s", str(lp.fleet_interval_s),
                                     "--segment-max-age-s", str(lp.segment_max_age_s),
                                     "--version-poll-s", "0.5", "--feedback-poll-s", "0.5", *settings],
                         work / "sidecar.log")
        processes.append(sidecar)
        # Straight to production: on loopback the loop closes in minutes, and a canary would wait for
        # release.min_seconds of traffic before the sidecar promotes it (tests/serving/test_canary.py).
        trigger_sets = [f"trigger.min_labeled_rows={lp.min_labeled_rows}", f"train.epochs={lp.epochs}",
                        "train.min_steps=0", "push.release_as=production", *run_sets]
        if span_dir:
            trigger_sets.append(f"trigger.span_dir={span_dir}")
        trigger = python("trigger", ["-m", "trigger", "--port", str(trigger_port), "--model-repository", repository,
                                     "--model-name", model_name, "--events", str(work / "trigger_events.jsonl"),
                                     "--run-logs", str(work / "runs"), *settings,
                                     *[a for s in trigger_sets for a in ("--set", s)]], work / "trigger.log")
        processes.append(trigger)
        trigger_url = f"http://127.0.0.1:{trigger_port}"
        sidecar_url = f"http://127.0.0.1:{sidecar_port}"
        alertmanager = Alertmanager(work, f"{trigger_url}/api/v1/alerts", lp.group_wait_s, "5s", lp.repeat_interval)
        processes.append(alertmanager)
        wait_for(lambda: http_client.get_json(f"{trigger_url}/status", timeout_s=5) is not None, 60, "the trigger service", trigger)
        wait_for(lambda: http_client.request(f"{sidecar_url}/healthz/ready", timeout_s=2).ok,
                 lp.timeout_s, f"the sidecar ready with v{served}", sidecar)
        rules = loop_stack.shorten_rules(loop_stack.RULES.read_text(), lp.alert_for, lp.rules_window)
        prometheus = Prometheus(work, {"flywheel-serving-metrics": [(f"127.0.0.1:{sidecar_port}", {
            "namespace": NAMESPACE, "pod": "loop-sidecar", "service": "flywheel-serving-metrics"})],
            "flywheel-trigger": [(f"127.0.0.1:{trigger_port}", {"namespace": NAMESPACE})]},
            f"127.0.0.1:{alertmanager.port}", rules, lp.scrape_s)
        processes.append(prometheus)
        mark(f"serving v{served}, stack up")

        client = Client(sidecar_url, model_name, lp.feedback_delay_s, f"loop-{int(result.started)}")
        client.replay(rows, labels, lp.request_rows)
        if client.failed:
            raise RuntimeError(f"{client.failed} predict request(s) failed (last: {client.last_error[:300]}); "
                               f"see {work / 'sidecar.log'}")
        mark(f"traffic sent ({len(rows)} rows, {client.labeled} labeled requests)")

        def drifted():
            return any(v == 1 for v in _metric(f"{sidecar_url}/metrics", DRIFT, {"measure": "drifted"}))
        wait_for(drifted, lp.timeout_s, "the sidecar's fleet drift to flag a feature", sidecar)
        mark("drift detected")
        alerts = set(params.trigger.alerts)
        firing = wait_for(lambda: [a for a in prometheus.query('ALERTS{alertstate="firing"}')
                                   if a["metric"]["alertname"] in alerts], lp.timeout_s,
                          "a retraining alert to fire in Prometheus", prometheus)
        result.alert = firing[0]["metric"]["alertname"]
        mark(f"alert firing ({result.alert})")

        def events():
            result.events = http_client.get_json(f"{trigger_url}/status", timeout_s=5)["events"]
            return result.events

        def event(kind: str):
            return next((e for e in events() if e["event"] == kind), None)
        notified = wait_for(lambda: next((e for e in events() if e["event"] == "notification"
                                          and e["action"] != "ignored"), None),
                            lp.timeout_s, "Alertmanager's notification of the alert at the trigger", trigger)
        result.marks["trigger notified"] = notified["received"]
        started = wait_for(lambda: event("run_started"), lp.timeout_s, "the trigger to start a run", trigger)
        result.marks["run started"] = started["time"]
        result.span = started["span"]
        result.alert = started["trigger"]["alert"]
        progress(f"  {started['time'] - result.started:6.1f}s  run started on {os.path.basename(result.span)}")
        finished = wait_for(lambda: event("run_finished"), 3 * lp.timeout_s, "the training run to end", trigger)
        result.marks["run finished"] = finished["time"]
        result.new_version = finished.get("pushed_version")
        progress(f"  {finished['time'] - result.started:6.1f}s  run finished: "
                 f"{'pushed v' + str(result.new_version) if result.new_version else 'nothing pushed'}")
        if not finished.get("succeeded") or not result.new_version:
            raise RuntimeError(f"the run did not push a new version; its log: {finished.get('log', '?')}")
        wait_for(lambda: result.new_version in _metric(f"{sidecar_url}/metrics", metric_names.MODEL_VERSION),
                 lp.timeout_s, f"v{result.new_version} served", sidecar)
        mark(f"v{result.new_version} served")

        client.replay(rows[: max(lp.request_rows * 20, 400)], None, lp.request_rows, start=10**6)

        def calm():   # measured on enough rows of the new version, and no feature drifted
            metrics = f"{sidecar_url}/metrics"
            rows_seen = _metric(metrics, metric_names.FLEET_DRIFT_ROWS)
            values = _metric(metrics, DRIFT, {"measure": "drifted"})
            return (rows_seen and max(rows_seen) >= params.monitoring.min_drift_rows and values
                    and not any(v == 1 for v in values))
        wait_for(calm, lp.timeout_s, "the drift gauges to fall with the new version", sidecar)
        mark("drift gauges fell")
        time.sleep(2 * lp.scrape_s)   # the last state scraped, for the picture
        result.timeline = draw_timeline(prometheus, result, str(work / "timeline.png"), model_name)
    except RuntimeError as error:
        result.error = str(error)
    finally:
        for process in reversed(processes):
            process.stop()
    return result


def seed_repository(source: str, model_name: str, work: Path, version: int = 0) -> tuple[str, int]:
    """A model repository of the loop's own, holding one version copied from `source` (default its
    first): the loop retrains into it, so the repository `make run` pushes to is left as it was
    and the loop can be run again (the traffic drifts from the data that version trained on)."""
    versions = repo.versions(source, model_name)
    if not versions:
        raise RuntimeError(f"no version of {model_name} pushed under {source}: run `make run` first")
    version = version or versions[0]
    if version not in versions:
        raise RuntimeError(f"no version {version} of {model_name} under {source} (versions {versions})")
    repository = str((work / "model_repository").absolute())
    storage.copy_tree(repo.version_dir(source, model_name, version), repo.version_dir(repository, model_name, version))
    return repository, version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel loop", description=__doc__.splitlines()[0])
    options.add_params(parser, help="params.yaml the model server, sidecar, trigger and runs read")
    options.add_model(parser, repository_help="where the served version is copied from (the loop retrains into a "
                      "copy; default: push.model_repository in params.yaml)")
    parser.add_argument("--seed-version", type=int, default=0, help="the version served first (default the first)")
    parser.add_argument("--traffic", default=None,
                        help="a span replayed as traffic (default the generated span that drifts: span-003.csv "
                        "in data.output_dir)")
    parser.add_argument("--label", default=None, help="the label column (default ingest.label)")
    parser.add_argument("--work", default="", help="the loop's directory (default runs/loop/<time>)")
    options.add_sets(parser, help="a params.yaml setting, e.g. loop.traffic_rows=3000 (loop.* here, others for the run)")
    args = parser.parse_args(argv)
    params = options.load(args)
    args.model_repository, args.model_name = options.model(args, params)
    args.traffic = args.traffic or os.path.join(params.data.output_dir, "span-003.csv")
    args.label = args.label or params.ingest.label
    sets = options.parse_sets(args.set)
    params = params_module.override(params, {k: v for k, v in sets.items() if k.startswith("loop.")})
    run_sets = tuple(a for a in args.set if not a.startswith("loop."))
    if not os.path.exists(args.traffic):
        print(f"error: no traffic file {args.traffic}: generate the spans with `make data`", file=sys.stderr)
        return 2
    work = Path(args.work or os.path.join("runs", "loop", time.strftime("%Y%m%d-%H%M%S")))
    console.quiet()
    try:
        repository, seed = seed_repository(args.model_repository, args.model_name, work, args.seed_version)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"loop: {args.model_name} v{seed} of {args.model_repository} served from {repository}, traffic "
          f"{args.traffic}; logs in {work}/", flush=True)
    result = run(repository, args.model_name, args.traffic, args.label, params, work, run_sets,
                 progress=lambda line: print(line, flush=True), params_file=args.params)
    (work / "summary.json").write_text(json.dumps(dataclasses.asdict(result), indent=1, default=str))
    print("\n".join(result.lines()))
    if not result.error:
        print(f"lineage of the new version: make lineage REPOSITORY={repository}")
    return 1 if result.error else 0


if __name__ == "__main__":
    sys.exit(main())
