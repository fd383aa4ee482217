"""Every Prometheus metric the sidecar exports, and its label set: the contract the alert rules,
the recording rules and the dashboards are written against (monitoring/rendering.py).

Names and label lists are module constants; `SidecarMetrics(model, registry)` creates them on a
registry passed in (tests use a fresh CollectorRegistry). Counters and gauges the request path
touches are prometheus_client objects with cached children; everything computed from state (drift
decisions, feedback counts, shipping) is read at scrape time by `StateCollector.collect()`. Label
values are bounded whatever clients send: `model` is the configured name, `feature` and `bin`
come from the served version's schema and statistics (categorical levels capped by
`export_levels`), `kind`/`outcome`/`measure` from the lists below.
"""
from __future__ import annotations

import math
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# The names other processes read (the live report, the closed loop) are defined with them; the
# rest are the sidecar's own.
from flywheel.metric_names import (DRIFT_WINDOW_ROWS, FEATURE_DRIFT, FLEET_DRIFT_ROWS,  # noqa: F401
                                   FLEET_FEATURE_DRIFT, JOINT_DRIFT, JOINT_DRIFT_PAIR, MODEL_VERSION,
                                   PREDICTION_DRIFT, SCHEMA_ANOMALIES)

# prometheus_client appends _total to counter names.
REQUESTS = "flywheel_requests"                                  # {model, code}
REQUEST_DURATION = "flywheel_request_duration_seconds"          # {model}
UPSTREAM_DURATION = "flywheel_upstream_duration_seconds"        # {model}
ERRORS = "flywheel_errors"                                      # {model, kind}
IN_FLIGHT = "flywheel_in_flight_requests"                       # {model}
IN_FLIGHT_BYTES = "flywheel_in_flight_bytes"                    # {model}
MODEL_PUSHED = "flywheel_model_pushed_timestamp_seconds"        # {model}
BASELINE_LOADED = "flywheel_baseline_loaded"                    # {model}
SCHEMA_VERSION = "flywheel_schema_version"                      # {model}: the curated schema version it was trained on
UPSTREAM_UP = "flywheel_upstream_up"                            # {model}
READY = "flywheel_ready"                                        # {model}
# Drift: the rule's numbers on this pod's window and on the fleet's (monitoring/fleet.py).
FLEET_PREDICTION_DRIFT = "flywheel_fleet_prediction_drift"      # {model, measure}
FLEET_DRIFT_INSTANCES = "flywheel_fleet_drift_instances"        # {model}
FLEET_DRIFT_AGE = "flywheel_fleet_drift_age_seconds"            # {model}
# Joint drift (flywheel/drift/joint.py): the check on this pod's window and on the fleet's; per
# pair of the pairs that moved most (at most flywheel.drift.joint.TOP), its correlations and test.
FLEET_JOINT_DRIFT = "flywheel_fleet_joint_drift"                # {model, measure}
FLEET_JOINT_DRIFT_PAIR = "flywheel_fleet_joint_drift_pair"      # {model, pair, measure}
# Drift: what Prometheus sums across pods (recording rules turn them into fleet distances).
DRIFT_VALUES = "flywheel_drift_values"                          # {model, version, feature, bin}
DRIFT_MISSING = "flywheel_drift_missing_values"                 # {model, version, feature}
DRIFT_REFERENCE_SHARE = "flywheel_drift_reference_share"        # {model, version, feature, bin}
# Feedback.
FEEDBACK_REQUESTS = "flywheel_feedback_requests"                # {model, outcome}
FEEDBACK_JOINED_ROWS = "flywheel_feedback_joined_rows"          # {model}
FEEDBACK_SCORED_ROWS = "flywheel_feedback_scored_rows"          # {model}
FEEDBACK_CORRECT_ROWS = "flywheel_feedback_correct_rows"        # {model}
FEEDBACK_DUPLICATES = "flywheel_feedback_duplicates"            # {model}
LIVE_ACCURACY = "flywheel_live_accuracy"                        # {model}
FEEDBACK_MEMORY_ENTRIES = "flywheel_feedback_memory_entries"    # {model}
FEEDBACK_MEMORY_BYTES = "flywheel_feedback_memory_bytes"        # {model}
# Releases: canary and shadow (monitoring/routing.py).
RELEASE_REQUESTS = "flywheel_release_requests"                  # {model, label, version, outcome}
RELEASE_LATENCY = "flywheel_release_latency_seconds"            # {model, label}
ESTIMATED_ACCURACY = "flywheel_estimated_accuracy"              # {model, label, version, bound}
ESTIMATED_ROC_AUC = "flywheel_estimated_roc_auc"                # {model, label, version}
SHADOW_SCORE_DIFFERENCE = "flywheel_shadow_score_difference"    # {model}
SHADOW_ROWS = "flywheel_shadow_rows"                            # {model, agreed}
RELEASE_DECISIONS = "flywheel_release_decisions"                # {model, decision}
LABEL_VERSION = "flywheel_label_version"                        # {model, label}
# Prediction log.
LOG_RECORDS = "flywheel_prediction_log_records"                 # {outcome}
LOG_QUEUE_DEPTH = "flywheel_prediction_log_queue_depth"
LOG_QUEUE_BYTES = "flywheel_prediction_log_queue_bytes"
OBSERVER_ERRORS = "flywheel_observer_errors"
LOG_SEGMENTS = "flywheel_log_segments"                          # {outcome}
LOG_SHIPPED_BYTES = "flywheel_log_shipped_bytes"
LOG_UNSHIPPED_SEGMENTS = "flywheel_log_unshipped_segments"
LOG_OLDEST_UNSHIPPED = "flywheel_log_oldest_unshipped_age_seconds"
# Precomputed answers served by key (monitoring/lookup.py).
LOOKUP_ROWS = "flywheel_lookup_rows"                            # {model, outcome}
LOOKUP_REQUESTS = "flywheel_lookup_requests"                    # {model, outcome}
LOOKUP_LOADS = "flywheel_lookup_loads"                          # {model, outcome}
LOOKUP_BATCH_AGE = "flywheel_lookup_batch_age_seconds"          # {model}
LOOKUP_KEYS = "flywheel_lookup_keys"                            # {model}
LOOKUP_VERSION = "flywheel_lookup_version"                      # {model}
# Entity features from the feature store (monitoring/online_features.py).
ONLINE_FEATURE_ROWS = "flywheel_online_feature_rows"                         # {model, outcome}
ONLINE_FEATURE_FETCH = "flywheel_online_feature_fetch_seconds"               # {model}
ONLINE_FEATURE_NEWEST = "flywheel_online_feature_newest_timestamp_seconds"   # {model}

ERROR_KINDS = ("bad_json", "bad_request", "unknown_model", "too_large", "upstream_down", "upstream_timeout",
               "upstream_error", "overloaded", "body_timeout", "unsupported_encoding", "internal")
ANOMALY_KINDS = ("missing", "unknown", "wrong_type", "out_of_domain", "nan")
# The drift rule's numbers per feature (flywheel.drift.FeatureDrift): drifted is 1 when the change
# is real and material; materiality is the larger effect size over its threshold (>= 1: material).
DRIFT_MEASURES = ("drifted", "p_value", "p_corrected", "wasserstein_sd", "linf", "psi", "materiality", "rows")
# The joint check's measures: drifted (1: some pair changed really and materially), compared (0:
# too few rows or no reference), pairs tested, the smallest Holm-corrected p, the largest change of a
# correlation over joint_min_change (>= 1: material), rows; per pair: r_ref, r_cur, change,
# p_corrected, drifted.
JOINT_MEASURES = ("drifted", "compared", "pairs", "p_corrected", "materiality", "rows")
JOINT_PAIR_MEASURES = ("r_ref", "r_cur", "change", "p_corrected", "drifted")
FEEDBACK_OUTCOMES = ("accepted", "duplicate", "rejected", "unauthorized", "unavailable")
LOG_OUTCOMES = ("written", "dropped")
# Keyed rows: found and fresh, not found, found in a batch older than batch.max_age_s, scored by
# another version than the served one; keyed requests: answered from the batch or sent online.
LOOKUP_ROW_OUTCOMES = ("hit", "miss", "stale", "other_version")
LOOKUP_REQUEST_OUTCOMES = ("answered", "fallback")
LOOKUP_LOAD_OUTCOMES = ("loaded", "failed")
# Rows given entity features: all found, the key unknown to the store, the feature server failing.
ONLINE_FEATURE_OUTCOMES = ("found", "missing", "error")
SEGMENT_OUTCOMES = ("shipped", "failed", "lost")
# The sidecar adds well under a millisecond; TF Serving answers in milliseconds to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def decision_measures(result) -> dict[str, float]:
    """A FeatureDrift as the exported measures (NaN ones left out)."""
    ratios = [result.effect_value / result.threshold if result.threshold else math.nan,
              result.psi / result.psi_threshold if result.psi_threshold else math.nan]
    values = {"drifted": float(result.drifted), "p_value": result.p_value, "p_corrected": result.p_corrected,
              "wasserstein_sd": result.wasserstein_sd, "linf": result.linf, "psi": result.psi,
              "materiality": max((r for r in ratios if math.isfinite(r)), default=math.nan),
              "rows": float(result.n_cur)}
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


def joint_measures(result) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """A JointDrift as the exported measures: (overall, per pair labelled `a ~ b`)."""
    overall = {"drifted": float(result.drifted), "compared": float(result.compared), "pairs": float(result.pairs),
               "rows": float(result.n_cur)}
    if result.top:
        overall["p_corrected"] = min(p.p_corrected for p in result.top)
        overall["materiality"] = max(abs(p.change) for p in result.top) / result.min_change
    pairs = {f"{p.a} ~ {p.b}": {"r_ref": p.r_ref, "r_cur": p.r_cur, "change": p.change, "p_corrected": p.p_corrected,
                                "drifted": float(p.drifted)} for p in result.top}
    return overall, pairs


# Metrics read from state at scrape time: name -> (type, help, labels).
STATE_METRICS = {
    FEATURE_DRIFT: ("gauge", "The drift rule on this pod's window, per feature (see DRIFT_MEASURES)",
                    ("model", "feature", "measure")),
    PREDICTION_DRIFT: ("gauge", "The drift rule on this pod's served scores against the evaluation scores",
                       ("model", "measure")),
    DRIFT_WINDOW_ROWS: ("gauge", "Rows in this pod's sliding drift window", ("model",)),
    FLEET_FEATURE_DRIFT: ("gauge", "The drift rule on the sum of every pod's window, per feature",
                          ("model", "feature", "measure")),
    FLEET_PREDICTION_DRIFT: ("gauge", "The drift rule on every pod's served scores", ("model", "measure")),
    FLEET_DRIFT_ROWS: ("gauge", "Rows in the fleet's drift windows", ("model",)),
    FLEET_DRIFT_INSTANCES: ("gauge", "Pods whose windows the fleet's drift includes", ("model",)),
    FLEET_DRIFT_AGE: ("gauge", "Seconds since the fleet's drift was computed", ("model",)),
    JOINT_DRIFT: ("gauge", "The joint drift check on this pod's window (see JOINT_MEASURES)", ("model", "measure")),
    JOINT_DRIFT_PAIR: ("gauge", "The joint drift check on this pod's window: the pairs that moved most",
                       ("model", "pair", "measure")),
    FLEET_JOINT_DRIFT: ("gauge", "The joint drift check on the sum of every pod's window", ("model", "measure")),
    FLEET_JOINT_DRIFT_PAIR: ("gauge", "The joint drift check on every pod's window: the pairs that moved most",
                             ("model", "pair", "measure")),
    DRIFT_VALUES: ("counter", "Served values counted into the reference's exported bins (sum across pods)",
                   ("model", "version", "feature", "bin")),
    DRIFT_MISSING: ("counter", "Served values absent or unusable, per feature", ("model", "version", "feature")),
    DRIFT_REFERENCE_SHARE: ("gauge", "The reference's share of each exported bin",
                            ("model", "version", "feature", "bin")),
    FEEDBACK_JOINED_ROWS: ("counter", "Labelled rows joined to predictions this pod served", ("model",)),
    FEEDBACK_SCORED_ROWS: ("counter", "Joined rows judged right or wrong (classification)", ("model",)),
    FEEDBACK_CORRECT_ROWS: ("counter", "Joined rows whose prediction was right", ("model",)),
    FEEDBACK_DUPLICATES: ("counter", "Feedback for a request id already answered", ("model",)),
    FEEDBACK_MEMORY_ENTRIES: ("gauge", "Predictions kept for joining feedback", ("model",)),
    FEEDBACK_MEMORY_BYTES: ("gauge", "Bytes the kept predictions take", ("model",)),
    LOG_SEGMENTS: ("counter", "Closed prediction-log segments by outcome (lost: deleted unshipped)", ("outcome",)),
    LOG_SHIPPED_BYTES: ("counter", "Compressed bytes of shipped segments", ()),
    LOG_UNSHIPPED_SEGMENTS: ("gauge", "Segments not shipped yet (the open one included)", ()),
    LOG_OLDEST_UNSHIPPED: ("gauge", "Age of the oldest unshipped segment (0 when none)", ()),
}


class StateCollector(Collector):
    """The STATE_METRICS families, their samples from `read()`: {name: [(label values, value)]}."""

    def __init__(self, read: Callable[[], dict]):
        self.read = read

    def collect(self):
        samples = self.read()
        for name, (kind, text, labels) in STATE_METRICS.items():
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, text, labels=labels)
            for values, value in samples.get(name, ()):
                family.add_metric(values, value)
            yield family


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
        self.in_flight = Gauge(IN_FLIGHT, "Requests being handled now", ["model"], registry=registry).labels(model)
        self.in_flight_bytes = Gauge(IN_FLIGHT_BYTES, "Request body bytes held by requests being handled",
                                     ["model"], registry=registry).labels(model)
        self.schema_anomalies = Counter(SCHEMA_ANOMALIES, "Served values that break the SERVING schema",
                                        ["model", "feature", "kind"], registry=registry)
        feedback = Counter(FEEDBACK_REQUESTS, "Feedback requests by outcome (accepted: durable in the feedback log)",
                           ["model", "outcome"], registry=registry)
        self.feedback = {outcome: feedback.labels(model, outcome) for outcome in FEEDBACK_OUTCOMES}
        self.live_accuracy = Gauge(LIVE_ACCURACY, "Accuracy over this pod's last feedback rows", ["model"],
                                   registry=registry).labels(model)
        records = Counter(LOG_RECORDS, "Prediction log records by outcome", ["outcome"], registry=registry)
        self.log_records = {outcome: records.labels(outcome) for outcome in LOG_OUTCOMES}
        self.log_queue_depth = Gauge(LOG_QUEUE_DEPTH, "Records waiting for the observer", registry=registry)
        self.log_queue_bytes = Gauge(LOG_QUEUE_BYTES, "Request and response bytes waiting for the observer",
                                     registry=registry)
        self.observer_errors = Counter(OBSERVER_ERRORS, "Records the observer could not process (logged in short "
                                       "form, kept out of drift)", registry=registry)
        self.model_version = Gauge(MODEL_VERSION, "Model version served (newest AVAILABLE upstream)", ["model"],
                                   registry=registry).labels(model)
        self.model_pushed = Gauge(MODEL_PUSHED, "pushed_at of the served version (unix seconds)", ["model"],
                                  registry=registry).labels(model)
        self.schema_version = Gauge(SCHEMA_VERSION, "Curated schema version the served version was trained with "
                                    "(0: a version pushed without one)", ["model"], registry=registry).labels(model)
        self.baseline_loaded = Gauge(BASELINE_LOADED, "1 when the served version's baseline is loaded", ["model"],
                                     registry=registry).labels(model)
        self.upstream_up = Gauge(UPSTREAM_UP, "1 when TF Serving answered the last call", ["model"],
                                 registry=registry).labels(model)
        self.ready = Gauge(READY, "1 when /healthz/ready answers 200", ["model"], registry=registry).labels(model)
        lookup_rows = Counter(LOOKUP_ROWS, "Keyed rows by lookup outcome (hit, miss, stale, other_version)",
                              ["model", "outcome"], registry=registry)
        self.lookup_rows = {o: lookup_rows.labels(model, o) for o in LOOKUP_ROW_OUTCOMES}
        lookup_requests = Counter(LOOKUP_REQUESTS, "Keyed requests answered from the batch or sent to the online "
                                  "model (fallback)", ["model", "outcome"], registry=registry)
        self.lookup_requests = {o: lookup_requests.labels(model, o) for o in LOOKUP_REQUEST_OUTCOMES}
        lookup_loads = Counter(LOOKUP_LOADS, "Batch runs the lookup opened, or failed to", ["model", "outcome"],
                               registry=registry)
        self.lookup_loads = {o: lookup_loads.labels(model, o) for o in LOOKUP_LOAD_OUTCOMES}
        self.lookup_age = Gauge(LOOKUP_BATCH_AGE, "Seconds since the loaded batch was scored (NaN: none loaded)",
                                ["model"], registry=registry).labels(model)
        self.lookup_keys = Gauge(LOOKUP_KEYS, "Keys in the loaded batch", ["model"], registry=registry).labels(model)
        self.lookup_version = Gauge(LOOKUP_VERSION, "Model version that scored the loaded batch (NaN: none)",
                                    ["model"], registry=registry).labels(model)
        rows = Counter(ONLINE_FEATURE_ROWS, "Rows given entity features from the feature store, by outcome",
                       ["model", "outcome"], registry=registry)
        self.online_feature_rows = {o: rows.labels(model, o) for o in ONLINE_FEATURE_OUTCOMES}
        self.online_feature_fetch = Histogram(ONLINE_FEATURE_FETCH, "Time to fetch a request's entity features",
                                              ["model"], buckets=LATENCY_BUCKETS, registry=registry).labels(model)
        self.online_feature_newest = Gauge(ONLINE_FEATURE_NEWEST, "Newest event timestamp among the entity feature "
                                           "values served (unix seconds; 0 before the first)", ["model"],
                                           registry=registry).labels(model)
        self._by_code: dict[int, object] = {}
        self._anomaly: dict[tuple[str, str], object] = {}

    def request(self, code: int):
        """Counter child for a status code (children cached: the request path avoids labels())."""
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self.requests.labels(self.model, str(code))
        return child

    def schema_anomaly(self, feature: str, kind: str):
        child = self._anomaly.get((feature, kind))
        if child is None:
            child = self._anomaly[(feature, kind)] = self.schema_anomalies.labels(self.model, feature, kind)
        return child

    def watch(self, read: Callable[[], dict]) -> None:
        self.registry.register(StateCollector(read))
