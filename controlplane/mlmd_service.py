"""ML Metadata's gRPC service (`ml_metadata.MetadataStoreService`), which KFP's driver and launcher
call to record every run, task, execution and artifact, for the KFP backend on the test control plane.

    .venv-mlmd/bin/python controlplane/mlmd_service.py --database DIR/mlmd.sqlite --port 8080 [--host ADDR]
    .venv-mlmd/bin/python controlplane/mlmd_service.py --served      # the methods it answers

MLMD ships its server as a C++ binary built with Bazel, not as a package; the `ml-metadata` wheel
ships the store itself, a pybind11 extension over SQLite. Each method of the service takes one
serialized request and answers one serialized response, and the extension's function of the same
name takes and returns exactly those bytes, so this service passes the bytes through undecoded:
what a client sends is what MLMD's own server would be given. A method the wheel does not wrap
answers UNIMPLEMENTED; MLMD's error codes are gRPC's. Calls go one at a time through one lock
(one SQLite connection). It runs in .venv-mlmd (`make mlmd`), beside the control plane: it imports
nothing of it or of Flywheel. Prints `serving on HOST:PORT` once it accepts calls.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from ml_metadata.metadata_store.pywrap.metadata_store_extension import metadata_store as extension
from ml_metadata.proto import metadata_store_pb2, metadata_store_service_pb2

SERVICE = "ml_metadata.MetadataStoreService"
STATUS = {code.value[0]: code for code in grpc.StatusCode}


def method_names() -> list[str]:
    return [m.name for m in metadata_store_service_pb2.DESCRIPTOR.services_by_name["MetadataStoreService"].methods]


def served() -> list[str]:
    """The methods answered by the store, not UNIMPLEMENTED."""
    return [name for name in method_names() if hasattr(extension, name)]


def _handler(name: str, store, lock: threading.Lock):
    call = getattr(extension, name, None)

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        if call is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name}: not in the ml-metadata wheel's store")
        with lock:
            response, message, code = call(store, request)
        if code:
            context.abort(STATUS.get(code, grpc.StatusCode.UNKNOWN), message.decode("utf-8", "replace"))
        return response
    # No (de)serializers: the request and the response stay bytes.
    return grpc.unary_unary_rpc_method_handler(handle)


def open_store(database: str):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = database
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    options = metadata_store_pb2.MigrationOptions()
    return extension.CreateMetadataStore(config.SerializeToString(), options.SerializeToString())


def serve(database: str, host: str, port: int) -> grpc.Server:
    store, lock = open_store(database), threading.Lock()
    handler = grpc.method_handlers_generic_handler(SERVICE, {name: _handler(name, store, lock)
                                                             for name in method_names()})
    # KFP's clients send whole pipeline specs in contexts' properties: allow MLMD's own 100 MiB.
    limits = [("grpc.max_receive_message_length", 100 << 20), ("grpc.max_send_message_length", 100 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[handler], options=limits)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise SystemExit(f"mlmd_service: cannot listen on {host}:{port}")
    server.start()
    print(f"serving on {host}:{bound}", flush=True)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLite file (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (printed)")
    parser.add_argument("--served", action="store_true", help="print the methods served (JSON) and exit")
    args = parser.parse_args(argv)
    if args.served:
        print(json.dumps(served()))
        return 0
    if not args.database:
        parser.error("--database is required")
    server = serve(args.database, args.host, args.port)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
