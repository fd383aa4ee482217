"""python -m monitoring --port 8080 --upstream http://127.0.0.1:8501 --model-repository DIR \
    --model-name NAME --log-dir DIR   (every flag defaults from params.yaml)"""
from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from monitoring.app import make_app
from monitoring.config import SidecarConfig


def parse_args(argv: list[str] | None = None) -> SidecarConfig:
    defaults = SidecarConfig.from_params()
    parser = argparse.ArgumentParser(prog="python -m monitoring", description="Flywheel monitoring sidecar: "
                                     "proxy for TF Serving REST with prediction logging, drift and metrics.")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--upstream", default=defaults.upstream, help="TF Serving REST base URL")
    parser.add_argument("--model-repository", default=defaults.model_repository, help="local path, gs:// or s3://")
    parser.add_argument("--model-name", default=defaults.model_name)
    parser.add_argument("--log-dir", default=defaults.log_dir)
    parser.add_argument("--window-rows", type=int, default=defaults.window_rows)
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size)
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--upstream-timeout-s", type=float, default=defaults.upstream_timeout_s)
    parser.add_argument("--version-poll-s", type=float, default=defaults.version_poll_s)
    args = parser.parse_args(argv)
    return SidecarConfig.from_params(**{k: v for k, v in vars(args).items()})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    # The observer thread (logging, drift) shares the GIL with the event loop. At Python's default
    # 5 ms switch interval a request arriving while the observer works waits up to 5 ms for the
    # GIL; 0.5 ms keeps that wait below the sidecar's latency budget for a small cost in switches.
    sys.setswitchinterval(0.0005)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # uvloop is optional: plain asyncio works, a little slower
        pass
    web.run_app(make_app(config), host=config.host, port=config.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
