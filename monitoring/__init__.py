"""Flywheel monitoring sidecar: runs beside TF Serving in the same pod.

REST traffic (port 8080) goes through the sidecar: it proxies TF Serving's REST API untouched and,
off the response path, logs predictions, checks them against the served version's schema and
training baseline, and exports Prometheus metrics (monitoring/metrics.py).

gRPC: the sidecar does not proxy gRPC. Clients that use gRPC (port 8500) talk to TF Serving
directly; those predictions are served but NOT logged, drift-checked or counted by the sidecar
(TF Serving's own /monitoring/prometheus/metrics still counts them). Send traffic you want
monitored over REST through the sidecar.

Entry point: python -m monitoring --port 8080 --upstream http://127.0.0.1:8501 \
    --model-repository DIR --model-name NAME --log-dir DIR
"""
