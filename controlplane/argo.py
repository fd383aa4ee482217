"""Argo Workflows' controller and executor, built from their Go module (argo/), for the real node:
`workflow-controller` runs beside the control plane and `argoexec` is the image of every
workflow pod's init and wait containers (an OCI archive of the static binary, no Docker).

The Go proxy's copy of github.com/argoproj/argo-workflows/v3 (v3.6.10 and v3.6.7 alike) lacks
`workflow/executor/os-specific/signal_linux.go`, so argoexec does not compile for Linux
(`undefined: Setpgid`). Its darwin twin holds the same Unix code (process groups, `kill(-pgid)`,
`wait4`), so the build copies the module into argo/gen/ (ignored by git; go.mod's `replace` line
points there, as kfp-compiler's do) and adds that file as the Linux one (`go build -overlay`
refuses files in the module cache). Nothing of the module is committed. The binaries sit in
`<cache>/argo/bin/<key>/`, keyed on what decides them, as the control plane's do.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from controlplane.build import STAMP, _list_packages, _print, _run_go, build_keyed, cache_dir, go_binary, go_env
from controlplane.modules import ARGO_WORKFLOWS, download

MODULE = Path(__file__).resolve().parent / "argo"
GENERATED = MODULE / "gen" / "argo-workflows"
COMMANDS = {"workflow-controller": "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller",
            "argoexec": "github.com/argoproj/argo-workflows/v3/cmd/argoexec"}
OS_SPECIFIC = "workflow/executor/os-specific"
EXECUTOR_IMAGE = f"flywheel.local/argoexec:{ARGO_WORKFLOWS.rsplit('@', 1)[1]}"


def build_key(go: str) -> str:
    digest = hashlib.sha256()
    for path in (MODULE / "go.mod", MODULE / "go.sum", Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.encode())
    return digest.hexdigest()[:16]


def bin_dir() -> Path:
    return cache_dir() / "argo" / "bin" / build_key(go_binary())


def built() -> dict | None:
    stamp = bin_dir() / STAMP
    return json.loads(stamp.read_text()) if stamp.exists() else None


def generate() -> None:
    """argo/gen/: the module as the proxy serves it, with os-specific's Linux file added."""
    source = download(ARGO_WORKFLOWS)
    shutil.rmtree(GENERATED, ignore_errors=True)
    shutil.copytree(source, GENERATED, copy_function=shutil.copyfile)
    package = GENERATED / OS_SPECIFIC
    for path in (GENERATED, *GENERATED.rglob("*")):     # the module cache's copy is read-only
        if path.is_dir():
            path.chmod(0o755)
    if not (package / "signal_linux.go").exists():
        shutil.copyfile(package / "signal_darwin.go", package / "signal_linux.go")


def build(say=_print) -> Path:
    """Return the folder of `workflow-controller` and `argoexec`, building them first when missing."""
    target = bin_dir()
    env = {**go_env(cache_dir()), "CGO_ENABLED": "0"}   # static: argoexec's image holds nothing else
    cache = cache_dir() / "argo"

    def steps(staging: Path, log) -> None:
        say(f"[argo] building Argo's workflow controller and argoexec into {target} (log: {cache / 'build.log'})")
        generate()
        packages = _list_packages(MODULE, env, list(COMMANDS.values()), log)
        for name, package in COMMANDS.items():
            _run_go(["build", "-v", "-ldflags", "-s -w", "-o", str(staging / name), package],
                    MODULE, env, log, say, f"[argo] compiling {name}", packages)

    cache.mkdir(parents=True, exist_ok=True)
    build_keyed(target, cache, "argo", steps, say)
    return target


def executor_archive(out_dir: Path) -> Path:
    """The OCI archive of EXECUTOR_IMAGE (argoexec built first when missing), for the node."""
    from controlplane.node import binary_image_archive

    return binary_image_archive(out_dir / "argoexec.oci.tar", EXECUTOR_IMAGE, {"bin/argoexec": build() / "argoexec"},
                                ["/bin/argoexec"], directories=("tmp",))
