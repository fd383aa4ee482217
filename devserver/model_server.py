"""Development model server: TF Serving's REST and gRPC APIs in Python, for machines without the
TF Serving binary (like CI and laptops). In a cluster the real TF Serving runs instead.

    python -m devserver --rest-port 8501 --grpc-port 8500 \
        --model-repository model_repository --model-name taxi_tips

It serves the newest version in <repository>/<model name>/, polls for new ones and swaps them in
without dropping requests (devserver/servables.py). Not a production server: no batching and no
TF Serving metrics; the tests in tests/serving/ hold it to TF Serving's API.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading

from aiohttp import web

from devserver.grpc_api import make_grpc_server
from devserver.rest_api import make_rest_app
from devserver.servables import ServableManager
from flywheel import model_repository as repo
from flywheel import names, options, serving_protocol


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devserver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rest-port", type=int, default=serving_protocol.REST_PORT)
    parser.add_argument("--grpc-port", type=int, default=serving_protocol.GRPC_PORT, help="0 disables gRPC")
    parser.add_argument("--host", default="0.0.0.0")
    options.add_model(parser)
    options.add_params(parser)
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="how often to look for new versions")
    args = parser.parse_args(argv)
    repository, model_name = options.model(args, options.load(args))
    args.model_repository, args.model_name = repository, model_name or names.DEFAULT_MODEL_NAME
    return args


async def serve(args: argparse.Namespace) -> None:
    manager = ServableManager(args.model_repository, args.model_name)
    manager.poll()  # load what is there before opening the ports
    stop = threading.Event()
    poller = threading.Thread(target=manager.run_polling, args=(args.poll_seconds, stop), daemon=True, name="poll")
    poller.start()
    grpc_server = None
    if args.grpc_port:
        grpc_server = make_grpc_server(manager, args.grpc_port, args.host)
        grpc_server.start()
    runner = web.AppRunner(make_rest_app(manager), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.rest_port).start()
    logging.info("model server: REST :%d gRPC :%s repository %s model %s versions %s", args.rest_port,
                 args.grpc_port or "off", args.model_repository, args.model_name, sorted(manager._serving))
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    stop.set()
    if grpc_server:
        grpc_server.stop(grace=2)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not repo.versions(args.model_repository, args.model_name):
        logging.warning("no versions of %s under %s yet; serving will start when one is pushed",
                        args.model_name, args.model_repository)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
