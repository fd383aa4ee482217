"""python -m monitoring --port 8080 --upstream http://127.0.0.1:8501 --model-repository DIR \
    --model-name NAME --log-dir DIR   (every flag defaults from params.yaml `monitoring:`)"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from flywheel import options
from flywheel.params import MonitoringParams
from monitoring.config import SidecarConfig
from monitoring.server import run

# Settings worth a flag; every other MonitoringParams field is set in params.yaml.
FLAGS = ("log_dir", "log_destination", "window_rows", "window_rows_per_request", "queue_size", "queue_bytes",
         "max_body_bytes", "max_in_flight", "upstream_timeout_s", "connect_timeout_s", "version_poll_s",
         "segment_max_age_s", "fleet_interval_s", "feedback_poll_s", "linger_s", "drain_timeout_s", "token_file",
         "feedback_token_required")


def parse_args(argv: list[str] | None = None) -> SidecarConfig:
    first = argparse.ArgumentParser(add_help=False)
    options.add_params(first)
    known, argv = first.parse_known_args(argv)
    params = options.load(known)
    defaults = SidecarConfig.from_params(params)
    parser = argparse.ArgumentParser(prog="python -m monitoring", description="Flywheel monitoring sidecar: "
                                     "proxy for TF Serving REST with prediction logging, drift and metrics.")
    options.add_params(parser, help="params.yaml to read (monitoring:, drift:, batch:)")
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default loopback)")
    parser.add_argument("--port", type=int, default=defaults.port, help="predictions (and, by default, the rest)")
    parser.add_argument("--feedback-port", type=int, default=0, help="POST /v1/feedback on its own port (0: --port)")
    parser.add_argument("--metrics-port", type=int, default=0, help="/metrics on its own port (0: --port)")
    parser.add_argument("--upstream", default=defaults.upstream, help="TF Serving REST base URL")
    options.add_model(parser, repository_help=f"local path, gs:// or s3:// (default {defaults.model_repository!r})",
                      name_help=f"default {defaults.model_name!r}")
    parser.add_argument("--pod", default="", help="this replica's name in log file names (default $POD_NAME, "
                        "$HOSTNAME, the host name)")
    fields = {f.name: f for f in dataclasses.fields(MonitoringParams)}
    for name in FLAGS:
        default = getattr(defaults.monitoring, name)
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(default, bool) else {"type": type(default)}
        parser.add_argument("--" + name.replace("_", "-"), **kind, default=None,
                            help=f"params.yaml monitoring.{name} (default {default!r})")
    parser.add_argument("--feature-server", default=None, help="Feast feature server URL for entity features "
                        f"(params.yaml feature_store.server_url, default {defaults.feature_store.server_url!r})")
    assert set(FLAGS) <= set(fields)
    args = vars(parser.parse_args(argv))
    args.pop("params")
    feature_server = args.pop("feature_server")
    config = SidecarConfig.from_params(params, **args)
    if feature_server is None:
        return config
    return dataclasses.replace(config, feature_store=dataclasses.replace(config.feature_store,
                                                                         server_url=feature_server))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    # The observer thread (logging, drift) shares the GIL with the event loop. At Python's default
    # 5 ms switch interval a request arriving while the observer works waits up to 5 ms for the
    # GIL; 0.5 ms keeps that wait below the sidecar's latency budget for a small cost in switches.
    sys.setswitchinterval(0.0005)
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
