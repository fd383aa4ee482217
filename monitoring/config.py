"""Sidecar settings: one frozen dataclass, defaults from params.yaml's `monitoring:` and `push:`."""
from __future__ import annotations

import dataclasses

from flywheel import names
from flywheel import params as flywheel_params


@dataclasses.dataclass(frozen=True)
class SidecarConfig:
    upstream: str = "http://127.0.0.1:8501"
    model_repository: str = "model_repository"
    model_name: str = names.DEFAULT_MODEL_NAME
    host: str = "0.0.0.0"
    port: int = 8080
    log_dir: str = "runs/prediction_log"
    log_max_bytes: int = 64 * 1024 * 1024
    log_backups: int = 5
    queue_size: int = 10000
    window_rows: int = 2000
    max_body_bytes: int = 4 * 1024 * 1024
    upstream_timeout_s: float = 5.0
    version_poll_s: float = 5.0
    pii_fields: tuple[str, ...] = ("rider_email",)
    feedback_window: int = 1000
    feedback_remember: int = 100_000

    @classmethod
    def from_params(cls, params: flywheel_params.Params | None = None, **overrides) -> "SidecarConfig":
        params = params or flywheel_params.load()
        m = params.monitoring
        values = dict(model_repository=params.push.model_repository, model_name=params.push.model_name,
                      log_dir=m.log_dir, log_max_bytes=m.log_max_bytes, log_backups=m.log_backups,
                      queue_size=m.queue_size, window_rows=m.window_rows, max_body_bytes=m.max_body_bytes,
                      upstream_timeout_s=m.upstream_timeout_s, version_poll_s=m.version_poll_s,
                      pii_fields=tuple(m.pii_fields) or tuple(params.ingest.pii_columns),
                      feedback_window=m.feedback_window, feedback_remember=m.feedback_remember)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
