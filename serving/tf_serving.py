"""How the real TF Serving binary is started: config file paths and command-line flags.

The files in serving/config/ are what a TF Serving container mounts (the k8s manifests build a
ConfigMap from them); `command_line()` is the argument list that goes with them, so the
manifests, `make serve` documentation and tests agree on one set of flags.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "config"
MODELS_CONFIG = CONFIG_DIR / "models.config"
BATCHING_CONFIG = CONFIG_DIR / "batching.config"
MONITORING_CONFIG = CONFIG_DIR / "monitoring.config"
CONFIG_FILES = (MODELS_CONFIG, BATCHING_CONFIG, MONITORING_CONFIG)

REST_PORT = 8501
GRPC_PORT = 8500
METRICS_PATH = "/monitoring/prometheus/metrics"
# Where the container sees the files (ConfigMap mount) and the model repository (volume).
MOUNTED_CONFIG_DIR = "/etc/tfserving"
MOUNTED_MODEL_REPOSITORY = "/models"


def command_line(config_dir: str = MOUNTED_CONFIG_DIR, poll_seconds: int = 30) -> list[str]:
    """Arguments for `tensorflow_model_server` using the three config files under config_dir."""
    return [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={config_dir}/{MODELS_CONFIG.name}",
        f"--model_config_file_poll_wait_seconds={poll_seconds}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
        "--enable_batching=true",
        f"--batching_parameters_file={config_dir}/{BATCHING_CONFIG.name}",
        f"--monitoring_config_file={config_dir}/{MONITORING_CONFIG.name}",
    ]
