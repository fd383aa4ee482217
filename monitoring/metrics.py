"""Every Prometheus metric the sidecar exports (the alert rules and dashboards use these names and
label sets).

Names and label lists are module constants; `SidecarMetrics(registry)` creates them on a registry
passed in (tests use a fresh CollectorRegistry). Drift values are computed at scrape time by
`DriftCollector.collect()`, not per request. The `model` label is always the configured model
name and `feature` comes from the schema, so label cardinality is bounded whatever clients send.
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# prometheus_client appends _total to counter names.
REQUESTS = "flywheel_requests"                                  # {model, code}
REQUEST_DURATION = "flywheel_request_duration_seconds"          # {model}
UPSTREAM_DURATION = "flywheel_upstream_duration_seconds"        # {model}
ERRORS = "flywheel_errors"                                      # {model, kind}
FEATURE_DRIFT = "flywheel_feature_drift"                        # {model, feature, measure}
PREDICTION_DRIFT = "flywheel_prediction_drift"                  # {model, measure}
DRIFT_WINDOW_ROWS = "flywheel_drift_window_rows"                # {model}
SCHEMA_ANOMALIES = "flywheel_schema_anomalies"                  # {model, feature, kind}
FEEDBACK = "flywheel_feedback"                                  # {model}
LIVE_ACCURACY = "flywheel_live_accuracy"                        # {model}
LOG_QUEUE_DEPTH = "flywheel_prediction_log_queue_depth"
LOG_RECORDS = "flywheel_prediction_log_records"                 # {outcome}
MODEL_VERSION = "flywheel_model_version"                        # {model}
MODEL_PUSHED = "flywheel_model_pushed_timestamp_seconds"        # {model}
BASELINE_LOADED = "flywheel_baseline_loaded"                    # {model}
UPSTREAM_UP = "flywheel_upstream_up"                            # {model}

ERROR_KINDS = ("bad_json", "bad_request", "unknown_model", "too_large", "upstream_down", "upstream_timeout",
               "upstream_error")
ANOMALY_KINDS = ("missing", "unknown", "wrong_type", "out_of_domain", "nan")
DRIFT_MEASURES = ("linf", "jsd", "psi")
PREDICTION_MEASURES = ("jsd", "psi")
LOG_OUTCOMES = ("written", "dropped")
# The sidecar adds well under a millisecond; TF Serving answers in milliseconds to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DriftCollector(Collector):
    """Feature and prediction drift and window size, computed from the current window at scrape time."""

    def __init__(self, model: str, current_window: Callable[[], object]):
        self.model = model
        self.current_window = current_window

    def describe(self):
        return [GaugeMetricFamily(FEATURE_DRIFT, "", labels=["model", "feature", "measure"]),
                GaugeMetricFamily(PREDICTION_DRIFT, "", labels=["model", "measure"]),
                GaugeMetricFamily(DRIFT_WINDOW_ROWS, "", labels=["model"])]

    def collect(self):
        features = GaugeMetricFamily(FEATURE_DRIFT, "Drift of served feature values from the served version's "
                                     "training baseline (linf: categorical, jsd: approximate Jensen-Shannon, psi)",
                                     labels=["model", "feature", "measure"])
        predictions = GaugeMetricFamily(PREDICTION_DRIFT, "Drift of served scores from the evaluation predictions",
                                        labels=["model", "measure"])
        rows = GaugeMetricFamily(DRIFT_WINDOW_ROWS, "Rows in the sliding drift window", labels=["model"])
        window = self.current_window()
        if window is not None:
            for feature, measure, value in window.feature_drift():
                features.add_metric([self.model, feature, measure], value)
            for measure, value in window.prediction_drift():
                predictions.add_metric([self.model, measure], value)
            rows.add_metric([self.model], window.rows)
        else:
            rows.add_metric([self.model], 0)
        yield features
        yield predictions
        yield rows


class SidecarMetrics:
    def __init__(self, model: str, registry: CollectorRegistry):
        self.model = model
        self.registry = registry
        self.requests = Counter(REQUESTS, "Requests through the sidecar, by HTTP status code", ["model", "code"],
                                registry=registry)
        self.request_duration = Histogram(REQUEST_DURATION, "Time in the sidecar per request (client view)",
                                          ["model"], buckets=LATENCY_BUCKETS, registry=registry).labels(model)
        self.upstream_duration = Histogram(UPSTREAM_DURATION, "Time waiting for TF Serving", ["model"],
                                           buckets=LATENCY_BUCKETS, registry=registry).labels(model)
        errors = Counter(ERRORS, "Failed requests by cause", ["model", "kind"], registry=registry)
        self.errors = {kind: errors.labels(model, kind) for kind in ERROR_KINDS}
        self.schema_anomalies = Counter(SCHEMA_ANOMALIES, "Served values that break the SERVING schema",
                                        ["model", "feature", "kind"], registry=registry)
        self.feedback = Counter(FEEDBACK, "Ground-truth labels joined to logged predictions", ["model"],
                                registry=registry).labels(model)
        self.live_accuracy = Gauge(LIVE_ACCURACY, "Accuracy over the last feedback rows", ["model"],
                                   registry=registry).labels(model)
        self.log_queue_depth = Gauge(LOG_QUEUE_DEPTH, "Records waiting for the prediction log writer",
                                     registry=registry)
        records = Counter(LOG_RECORDS, "Prediction log records by outcome", ["outcome"], registry=registry)
        self.log_records = {outcome: records.labels(outcome) for outcome in LOG_OUTCOMES}
        self.model_version = Gauge(MODEL_VERSION, "Model version served (newest AVAILABLE upstream)", ["model"],
                                   registry=registry).labels(model)
        self.model_pushed = Gauge(MODEL_PUSHED, "pushed_at of the served version (unix seconds)", ["model"],
                                  registry=registry).labels(model)
        self.baseline_loaded = Gauge(BASELINE_LOADED, "1 when the served version's baseline is loaded", ["model"],
                                     registry=registry).labels(model)
        self.upstream_up = Gauge(UPSTREAM_UP, "1 when TF Serving answered the last model status poll", ["model"],
                                 registry=registry).labels(model)
        self._by_code: dict[int, object] = {}

    def request(self, code: int):
        """Counter child for a status code (children cached: the request path avoids labels())."""
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self.requests.labels(self.model, str(code))
        return child

    def watch_drift(self, current_window: Callable[[], object]) -> None:
        self.registry.register(DriftCollector(self.model, current_window))
