"""`python -m trigger`: the retraining trigger service (see trigger/service.py)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from flywheel import options
from flywheel import params as params_module
from flywheel import storage
from trigger import runs, service


def kfp_host(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            host = f.read().strip()
    except OSError as error:
        raise ValueError(f"--kfp-host-file {path}: {error.strerror}") from None
    if not host:
        raise ValueError(f"--kfp-host-file {path} is empty: set the Secret's `host` key to the KFP API endpoint")
    return host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel trigger", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (a pod passes 0.0.0.0)")
    parser.add_argument("--port", type=int, default=9095)
    options.add_model(parser)
    options.add_params(parser, help="params.yaml the service and the runs it starts read")
    parser.add_argument("--logs", default=None, help="log root (default: monitoring.log_destination in the params, "
                        "else <repository>/<model>/logs)")
    parser.add_argument("--events", default="runs/trigger/events.jsonl", help="event file (JSON lines)")
    parser.add_argument("--run-logs", default="runs/trigger", help="where the logs of local runs go")
    parser.add_argument("--kfp-host-file", default="", help="a file holding the KFP API endpoint (a mounted "
                        "Secret): runs go there; an empty or missing file is an error")
    options.add_sets(parser, help="a params.yaml setting: trigger.* for the service, any other for the runs it starts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    params = options.load(args)   # an unusable --params file: named, exit 2
    try:
        sets = options.parse_sets(args.set)
        own = {k: v for k, v in sets.items() if k.startswith("trigger.")}
        if args.kfp_host_file:
            own["trigger.kfp_host"] = kfp_host(args.kfp_host_file)
        params = params_module.override(params, own)
    except (ValueError, OSError) as error:   # OSError: a --kfp-host-file that cannot be read
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.model_repository, args.model_name = options.model(args, params)
    logs = params.monitoring.log_destination if args.logs is None else args.logs
    passed_on = tuple(a for a in args.set if not a.startswith("trigger."))
    # Absolute: the runs it starts read the same repository whatever their working directory.
    target = runs.Target(storage.absolute(args.model_repository), args.model_name, logs,
                         run_log_dir=args.run_logs, sets=passed_on, params_file=os.path.abspath(args.params))
    trigger = service.Trigger(target, params, args.events)
    print(f"trigger: http://{args.host}:{args.port}{service.WEBHOOK} (Alertmanager webhook), "
          f"runs {'on ' + params.trigger.kfp_host if params.trigger.kfp_host else 'here (kfp.local)'}", flush=True)
    web.run_app(service.make_app(trigger), host=args.host, port=args.port, print=None, shutdown_timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
