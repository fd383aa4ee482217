"""The live drift report: scrape the monitoring sidecar's /metrics, read the served version's
baseline from the model repository, write the self-contained HTML page, print its path.

    python -m pipelines.live_report [--metrics http://127.0.0.1:8080/metrics] [--model-repository DIR]
        [--model-name NAME] [--version N] [--out FILE.html]
    make live-report [METRICS_URL=...] [SERVE_REPOSITORY=...] [SERVE_MODEL=...] [VERSION=N]

The version is the one the sidecar says it serves (`flywheel_model_version`) unless --version names
one. A drift alert's runbook can run this against the pod the alert names (port-forward its 8080).
Exit status 1 with a one-line reason when the sidecar does not answer, exports no drift for the
model, or the version has no baseline.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flywheel import bundle, drift, http_client, model_repository, names, options, serving_protocol, storage
from flywheel import params as params_mod
from flywheel.report import joint, live, render
from flywheel.metric_names import (DRIFT_WINDOW_ROWS, FEATURE_DRIFT, JOINT_DRIFT, JOINT_DRIFT_PAIR, MODEL_VERSION,
                                   PREDICTION_DRIFT, SCHEMA_ANOMALIES)

MAX_BYTES = 64 * 1024 * 1024    # a scrape larger than this is not a sidecar's: refuse it, bounded memory
TIMEOUT_S = 10.0


class ReportError(Exception):
    pass


def scrape(url: str) -> str:
    try:
        answer = http_client.request(url, timeout_s=TIMEOUT_S, max_bytes=MAX_BYTES)
    except http_client.Unreachable as error:
        raise ReportError(f"{url}: the sidecar did not answer ({error.reason})") from error
    if not answer.ok:
        raise ReportError(f"{url}: the sidecar did not answer (HTTP {answer.status})")
    body = answer.body
    if len(body) > MAX_BYTES:
        raise ReportError(f"{url}: more than {MAX_BYTES} bytes of metrics; not a sidecar's /metrics")
    return body.decode("utf-8", errors="replace")


def read_metrics(text: str, model: str) -> dict:
    """The sidecar's drift numbers for `model`: {"measures": {feature: {measure: value}},
    "rows": window rows, "predictions": {measure: value}, "version": served version or None,
    "anomalies": {(feature, kind): served values that broke the schema}, "joint": {measure: value} and
    "joint_pairs": {pair: {measure: value}} of the joint drift check}."""
    from prometheus_client.parser import text_string_to_metric_families
    found = {"measures": {}, "rows": 0.0, "predictions": {}, "version": None, "anomalies": {}, "models": set(),
             "joint": {}, "joint_pairs": {}}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as error:
        raise ReportError(f"not Prometheus text exposition ({error})") from error
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if "model" in labels:
                found["models"].add(labels["model"])
            if labels.get("model") != model:
                continue
            if sample.name == FEATURE_DRIFT and "feature" in labels and "measure" in labels:
                found["measures"].setdefault(labels["feature"], {})[labels["measure"]] = float(sample.value)
            elif sample.name == DRIFT_WINDOW_ROWS:
                found["rows"] = float(sample.value)
            elif sample.name == PREDICTION_DRIFT and "measure" in labels:
                found["predictions"][labels["measure"]] = float(sample.value)
            elif sample.name == JOINT_DRIFT and "measure" in labels:
                found["joint"][labels["measure"]] = float(sample.value)
            elif sample.name == JOINT_DRIFT_PAIR and "pair" in labels and "measure" in labels:
                found["joint_pairs"].setdefault(labels["pair"], {})[labels["measure"]] = float(sample.value)
            elif sample.name == MODEL_VERSION and sample.value > 0:
                found["version"] = int(sample.value)
            elif sample.name == f"{SCHEMA_ANOMALIES}_total" and "feature" in labels and "kind" in labels:
                found["anomalies"][(labels["feature"], labels["kind"])] = float(sample.value)
    return found


def baseline_profiles(repository: str, model: str, version: int, features: set[str]) -> dict[str, drift.Profile]:
    """The served version's reference profiles of `features`: from baseline_profiles.json, and for
    what it lacks (a version pushed before profiles existed; a time column, which the profiles hold
    as its parts) read off its TFDV statistics, as the sidecar reads them."""
    version_dir = model_repository.version_dir(repository, model, version)
    profiles_file = bundle.path(version_dir, names.BASELINE_PROFILES)
    try:
        found = bundle.read_profiles(profiles_file) if storage.exists(profiles_file) else {}
        missing = features - set(found)
        if missing or not found:
            stats = bundle.read_stats(bundle.path(version_dir, names.BASELINE_STATS))
            found.update(drift.profiles_from_statistics(stats, missing))
        return found
    except FileNotFoundError as error:
        raise ReportError(f"{version_dir}: no baseline in this version's bundle ({error})") from error
    except ValueError as error:
        raise ReportError(str(error)) from error


def make(metrics_url: str, repository: str, model: str, version: int | None, out: Path | None) -> tuple[Path, dict]:
    found = read_metrics(scrape(metrics_url), model)
    if not found["measures"] and found["rows"] == 0:
        models = ", ".join(sorted(found["models"])) or "none"
        raise ReportError(f"{metrics_url}: no drift metrics for model '{model}' (models found: {models})")
    version = version or found["version"]
    if not version:
        raise ReportError(f"{metrics_url}: the sidecar names no served version of '{model}'; pass --version")
    profiles = baseline_profiles(repository, model, version, set(found["measures"]))
    rule = params_mod.load().drift
    joint_check = (joint.from_measures(found["joint"], found["joint_pairs"], rule.joint_alpha, rule.joint_min_change)
                   if found["joint"] else None)
    page = live.report(model, version, metrics_url, profiles, found["measures"], found["rows"], found["predictions"],
                       rule.psi, found["anomalies"], joint_check)
    out = out or Path("build") / "reports" / f"live-{model}-v{version}-{time.strftime('%Y%m%d-%H%M%S')}.html"
    render.write(page, out)
    return out, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel live-report",
                                     description="Write a monitoring sidecar's live drift report as one HTML page.")
    parser.add_argument("--metrics", default=serving_protocol.local_url(serving_protocol.SIDECAR_PORT, "/metrics"),
                        help="the sidecar's /metrics URL")
    options.add_model(parser)
    options.add_params(parser)
    parser.add_argument("--version", type=int, default=None, help="default: the version the sidecar serves")
    parser.add_argument("--out", type=Path, default=None, help="default build/reports/live-<model>-v<N>-<time>.html")
    args = parser.parse_args(argv)
    repository, model_name = options.model(args, options.load(args))
    try:
        out, found = make(args.metrics, repository, model_name, args.version, args.out)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"live report ({len(found['measures'])} features, {found['rows']:.0f} rows in the window; "
          f"open in a browser, works offline): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
