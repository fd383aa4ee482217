"""How the real TF Serving binary is started: config file paths and command-line flags.

The files in serving/config/ are what a TF Serving container mounts (the k8s manifests build a
ConfigMap from them); `command_line()` is the argument list that goes with them, so the
manifests, `make serve` documentation and tests agree on one set of flags.

The model config is not among them: TF Serving reads `<repository>/<model>/models.config`, which
the model repository rewrites at every label change (flywheel/model_repository.py: production,
canary, shadow under `version_labels`), and re-reads it every `poll_seconds`. So a promotion or
a rollback reaches every replica without a rollout. Until the first push writes it, TF Serving
cannot start (the pod restarts with back-off), as it could not serve anything anyway.
"""
from __future__ import annotations

from pathlib import Path

from flywheel import names
from flywheel.serving_protocol import GRPC_PORT, REST_PORT

CONFIG_DIR = Path(__file__).resolve().parent / "config"
BATCHING_CONFIG = CONFIG_DIR / "batching.config"
MONITORING_CONFIG = CONFIG_DIR / "monitoring.config"
CONFIG_FILES = (BATCHING_CONFIG, MONITORING_CONFIG)

METRICS_PATH = "/monitoring/prometheus/metrics"
# Where the container sees the files (ConfigMap mount) and the model repository (volume).
MOUNTED_CONFIG_DIR = "/etc/tfserving"
MOUNTED_MODEL_REPOSITORY = names.TF_SERVING_MOUNT


def models_config(model_name: str = names.DEFAULT_MODEL_NAME, repository_dir: str = MOUNTED_MODEL_REPOSITORY) -> str:
    """Where TF Serving reads its model config: the one the model repository keeps for the model."""
    return f"{repository_dir}/{model_name}/{names.TF_SERVING_CONFIG}"


def command_line(config_dir: str = MOUNTED_CONFIG_DIR, poll_seconds: int = 30,
                 model_name: str = names.DEFAULT_MODEL_NAME) -> list[str]:
    """Arguments for `tensorflow_model_server`: the repository's model config, the config files
    under config_dir."""
    return [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={models_config(model_name)}",
        f"--model_config_file_poll_wait_seconds={poll_seconds}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
        "--enable_batching=true",
        f"--batching_parameters_file={config_dir}/{BATCHING_CONFIG.name}",
        f"--monitoring_config_file={config_dir}/{MONITORING_CONFIG.name}",
    ]
