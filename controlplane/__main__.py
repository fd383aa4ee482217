"""python -m controlplane build|up|down|env|fake-nodes-only|kfp-compile

  build [--background]   build the binaries (and KFP's compiler and API server: kfp.py; Prometheus with Kubernetes
                         discovery: prometheus_server.py; Argo's controller and argoexec: argo.py) into the cache,
                         or reuse them
  up [--run-dir DIR]     build if needed, start the control plane detached, write DIR/admin.kubeconfig
  down [--run-dir DIR]   stop the processes `up` started (recorded in DIR/state.json)
  env [--run-dir DIR]    print the shell lines that point kubectl at the running control plane
  fake-nodes-only        exit 0 only if every node of the current kubectl context is a kwok fake node
  kfp-compile ARGS...    what KFP's API server does with a pipeline package (`kfp-compile -h`)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from controlplane import build as builder
from controlplane import argo, kfp, prometheus_server
from controlplane.cluster import FAKE_NODE_ANNOTATION, STATE, ControlPlane, stop_recorded

DEFAULT_RUN_DIR = builder.ROOT / "build" / "controlplane"


def _up(run_dir: Path) -> int:
    if (run_dir / STATE).exists():
        print(f"a control plane is already recorded in {run_dir / STATE}: `make controlplane-down` first",
              file=sys.stderr)
        return 1
    bins = builder.build()
    plane = ControlPlane(run_dir, bins, tie_to_parent=False)
    plane.start()
    print(_env_lines(run_dir))
    return 0


def _env_lines(run_dir: Path) -> str:
    state = json.loads((run_dir / STATE).read_text())
    return f"export KUBECONFIG={state['kubeconfig']}\nexport PATH={state['bin_dir']}:$PATH"


def _fake_nodes_only() -> int:
    """The one case where placeholder image digests may be deployed: no node pulls an image."""
    result = subprocess.run(["kubectl", "get", "nodes", "-o", "json"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        print(f"cannot list the cluster's nodes: {result.stderr.strip()}", file=sys.stderr)
        return 1
    nodes = json.loads(result.stdout)["items"]
    real = [n["metadata"]["name"] for n in nodes
            if any(n["metadata"].get("annotations", {}).get(k) != v for k, v in FAKE_NODE_ANNOTATION.items())]
    if not nodes or real:
        print(f"this cluster has nodes that run containers ({', '.join(real) or 'no nodes at all'}); "
              "placeholder digests cannot be deployed to it", file=sys.stderr)
        return 1
    print(f"every node ({len(nodes)}) is a kwok fake node: no image is pulled, placeholder digests accepted")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kfp-compile"]:  # every argument after it is kfp-compile's own
        return subprocess.run([str(kfp.build(say=lambda line: print(line, file=sys.stderr))), *argv[1:]]).returncode
    parser = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build")
    build_cmd.add_argument("--background", action="store_true", help="start the build detached and return")
    for name in ("up", "down", "env"):
        commands.add_parser(name).add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    commands.add_parser("fake-nodes-only")
    args = parser.parse_args(argv)

    if args.command == "build":
        if args.background:
            print(builder.start_in_background(complete=builder.built() is not None and kfp.built() is not None
                                                         and prometheus_server.built() is not None
                                                         and argo.built() is not None))
        else:
            print(f"control plane binaries: {builder.build()}")
            print(f"KFP's compiler and API server: {kfp.build().parent}")
            print(f"Prometheus with Kubernetes discovery: {prometheus_server.build()}")
            print(f"Argo's workflow controller and argoexec: {argo.build()}")
        return 0
    if args.command == "up":
        return _up(args.run_dir.resolve())
    if args.command == "down":
        stopped = stop_recorded(args.run_dir.resolve())
        print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing recorded in {args.run_dir / STATE}")
        return 0
    if args.command == "env":
        if not (args.run_dir / STATE).exists():
            print(f"no control plane recorded in {args.run_dir}: `make controlplane-up`", file=sys.stderr)
            return 1
        print(_env_lines(args.run_dir.resolve()))
        return 0
    return _fake_nodes_only()


if __name__ == "__main__":
    sys.exit(main())
