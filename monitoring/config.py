"""Sidecar settings: where it runs and what it talks to, plus the typed `monitoring:`, `drift:` and
`batch:` sections of params.yaml as they are (flywheel/params.py holds every default)."""
from __future__ import annotations

import dataclasses
import os
import socket
import time

from flywheel import names, serving_logs, serving_protocol
from flywheel import params as flywheel_params
from flywheel.params import BatchParams, DriftParams, FeatureStoreParams, MonitoringParams, ReleaseParams

_RUNTIME = ("upstream", "model_repository", "model_name", "host", "port", "feedback_port", "metrics_port", "pod",
            "token")


def read_token(path: str) -> str:
    """The bearer token in `path` (surrounding whitespace dropped); "" when there is no such file,
    as when the Secret holds no token."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


@dataclasses.dataclass(frozen=True)
class SidecarConfig:
    upstream: str = serving_protocol.local_url(serving_protocol.REST_PORT)
    model_repository: str = flywheel_params.PushParams().model_repository
    model_name: str = names.DEFAULT_MODEL_NAME
    # Loopback unless told otherwise: a pod passes --host=0.0.0.0 (manifests/base).
    host: str = "127.0.0.1"
    port: int = serving_protocol.SIDECAR_PORT   # predictions (the proxy); also feedback and metrics unless given their own
    feedback_port: int = 0                # 0: POST /v1/feedback on `port`
    metrics_port: int = 0                 # 0: /metrics on `port`
    pod: str = ""                         # "" = $POD_NAME, else $HOSTNAME, else this host's name
    token: str = dataclasses.field(default="", repr=False)   # bearer token for feedback ("" = none; else
    # monitoring.token_file is read, and re-read while the sidecar runs, so a rotated Secret applies)
    monitoring: MonitoringParams = MonitoringParams()
    drift: DriftParams = DriftParams()
    release: ReleaseParams = ReleaseParams()
    batch: BatchParams = BatchParams()    # the lookup of precomputed answers (monitoring/lookup.py)
    feature_store: FeatureStoreParams = FeatureStoreParams()   # entity features (monitoring/online_features.py)
    started_ms: int = dataclasses.field(default_factory=lambda: int(time.time() * 1000))

    @classmethod
    def from_params(cls, params: flywheel_params.Params | None = None, **overrides) -> "SidecarConfig":
        """Settings from params.yaml (or `params`); `overrides` name runtime fields or
        MonitoringParams fields (None values are ignored, as argparse leaves them)."""
        params = params or flywheel_params.load()
        overrides = {k: v for k, v in overrides.items() if v is not None}
        monitoring_fields = {f.name for f in dataclasses.fields(MonitoringParams)}
        unknown = set(overrides) - monitoring_fields - set(_RUNTIME)
        if unknown:
            raise ValueError(f"unknown sidecar setting(s): {sorted(unknown)}")
        monitoring = dataclasses.replace(params.monitoring,
                                         **{k: v for k, v in overrides.items() if k in monitoring_fields})
        if not monitoring.pii_fields:  # the columns ingest treats as PII, unless monitoring names its own
            monitoring = dataclasses.replace(monitoring, pii_fields=tuple(params.ingest.pii_columns))
        runtime = {"model_repository": params.push.model_repository, "model_name": params.push.model_name,
                   **{k: v for k, v in overrides.items() if k in _RUNTIME}}
        return cls(monitoring=monitoring, drift=params.drift, release=params.release, batch=params.batch,
                   feature_store=params.feature_store, **runtime)

    def with_monitoring(self, **changes) -> "SidecarConfig":
        return dataclasses.replace(self, monitoring=dataclasses.replace(self.monitoring, **changes))

    @property
    def pod_name(self) -> str:
        return self.pod or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()

    @property
    def instance(self) -> str:
        """This process among the fleet's: the pod and the start time (a restarted container is a new instance)."""
        return f"{self.pod_name}-{self.started_ms}"

    @property
    def log_destination(self) -> str:
        return self.monitoring.log_destination or serving_logs.logs_root(self.model_repository, self.model_name)
