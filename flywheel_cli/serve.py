"""`flywheel serve`: the pushed model on loopback, the development model server (REST and gRPC)
with the monitoring sidecar in front of it, each its own process (`python -m devserver`,
`python -m monitoring`, as in a pod).

Ctrl-C reaches both servers (they share the terminal's process group) and each stops on its own
signal handler; a TERM sent to this process is passed on once. When one server stops, the other
is stopped too.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from flywheel import model_repository as repo
from flywheel import options, serving_protocol


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flywheel serve", description=__doc__.splitlines()[0])
    options.add_model(p)
    options.add_params(p)
    p.add_argument("--rest-port", type=int, default=serving_protocol.REST_PORT, help="the model server's REST port")
    p.add_argument("--grpc-port", type=int, default=serving_protocol.GRPC_PORT,
                   help="the model server's gRPC port (0 disables it)")
    p.add_argument("--port", type=int, default=serving_protocol.SIDECAR_PORT, help="the sidecar's port")
    p.add_argument("--feature-server", default="", help="Feast feature server URL for entity features")
    return p


def commands(args: argparse.Namespace, repository: str, model_name: str) -> list[list[str]]:
    """The two servers' command lines."""
    model = ["--model-repository", repository, "--model-name", model_name, "--params", args.params]
    return [[sys.executable, "-m", "devserver", "--host", "127.0.0.1", "--rest-port", str(args.rest_port),
             "--grpc-port", str(args.grpc_port), *model],
            [sys.executable, "-m", "monitoring", "--port", str(args.port), "--upstream",
             f"http://127.0.0.1:{args.rest_port}", *model,
             *(["--feature-server", args.feature_server] if args.feature_server else [])]]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    repository, model_name = options.model(args, options.load(args))
    if not repo.versions(repository, model_name):
        print(f"No model pushed yet under {repository}/{model_name}/ (params.yaml push:). Run 'make run' first.",
              file=sys.stderr)
        return 1
    print(f"model server: REST http://127.0.0.1:{args.rest_port}  gRPC 127.0.0.1:{args.grpc_port}  "
          "(direct, unmonitored)")
    print(f"sidecar:      {serving_protocol.local_url(args.port, serving_protocol.predict_path(model_name))}  "
          f"/metrics  /healthz/ready  POST {serving_protocol.FEEDBACK_PATH}", flush=True)
    servers = [subprocess.Popen(command) for command in commands(args, repository, model_name)]

    def stop(*_) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for server in servers:
            if server.poll() is None:
                server.terminate()

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # set after the start: the servers keep their own
    signal.signal(signal.SIGTERM, stop)
    pid, status = os.wait()                       # the first server to stop
    for server in servers:
        if server.pid == pid:
            server.returncode = os.waitstatus_to_exitcode(status)
    stop()
    codes = [server.wait() for server in servers]
    return next((code for code in codes if code not in (0, -signal.SIGTERM, -signal.SIGINT)), 0)
