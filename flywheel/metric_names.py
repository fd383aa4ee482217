"""The names of the sidecar's metrics that other processes read: the live report and the
closed loop scrape /metrics for them. The sidecar exports them under these names
(monitoring/metrics.py, which holds every other metric name and all label sets), so a reader
and the exporter cannot drift apart.

prometheus_client appends _total to counter names; these are gauges.
"""
from __future__ import annotations

SCHEMA_ANOMALIES = "flywheel_schema_anomalies"                  # {model, feature, kind}
MODEL_VERSION = "flywheel_model_version"                        # {model}
# Drift: the rule's numbers on this pod's window and on the fleet's (monitoring/fleet.py).
FEATURE_DRIFT = "flywheel_feature_drift"                        # {model, feature, measure}
PREDICTION_DRIFT = "flywheel_prediction_drift"                  # {model, measure}
DRIFT_WINDOW_ROWS = "flywheel_drift_window_rows"                # {model}
FLEET_FEATURE_DRIFT = "flywheel_fleet_feature_drift"            # {model, feature, measure}
FLEET_DRIFT_ROWS = "flywheel_fleet_drift_rows"                  # {model}
# Joint drift (flywheel/drift/joint.py) on this pod's window.
JOINT_DRIFT = "flywheel_joint_drift"                            # {model, measure}
JOINT_DRIFT_PAIR = "flywheel_joint_drift_pair"                  # {model, pair, measure}
