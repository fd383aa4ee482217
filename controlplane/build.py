"""Build the control plane's binaries from their Go modules, or reuse them.

The binaries, Go's build cache and its module cache live under one cache directory outside the
repository (`$FLYWHEEL_CONTROLPLANE_CACHE`, default `~/.cache/flywheel/controlplane`). Binaries
sit in `bin/<key>/`, where the key hashes everything that decides their content (go.mod and
go.sum of both modules, etcd's main, the Go version, the link flags): a changed pin builds anew,
an unchanged one is reused at once. A lock file serialises builds, so `make test` can start one
in the background and the control-plane tests wait for it instead of starting a second one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAIN_MODULE = HERE                          # Kubernetes, kubectl, kwok, etcd
ADAPTER_MODULE = HERE / "prometheus-adapter"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy", "kwok",
            "prometheus-adapter")
CACHE_ENV = "FLYWHEEL_CONTROLPLANE_CACHE"
STAMP = "build.json"
BACKGROUND_OUT = "build-background.out"
PROGRESS_EVERY_S = 30.0


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flywheel" / "controlplane"


def go_binary() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise SystemExit("`go` is not on PATH (Go 1.26 or later builds the control plane: https://go.dev/dl/)")
    return found


def go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "GOCACHE": str(cache / "go-build"), "GOMODCACHE": str(cache / "go-mod"),
        # Writable module files, so removing the cache directory needs no chmod first.
        "GOFLAGS": "-modcacherw -trimpath",
        # Build with the Go that is installed, never download another toolchain.
        "GOTOOLCHAIN": "local",
        # Static binaries that need no C compiler, as Kubernetes releases its own.
        "CGO_ENABLED": "0",
    })
    return env


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version pinned in go.mod (stamped into the binaries)."""
    m = re.search(r"^\s*k8s\.io/kubernetes (v\d+\.\d+\.\d+)\b", (MAIN_MODULE / "go.mod").read_text(), re.MULTILINE)
    if m is None:
        raise SystemExit(f"{MAIN_MODULE / 'go.mod'}: no k8s.io/kubernetes requirement")
    return m.group(1)


def link_flags() -> str:
    """Strip symbols (faster links, smaller files) and stamp the version Kubernetes' own build
    stamps, so `kubectl version` and the API server's /version say which release this is."""
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (f"-s -w -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} "
            f"-X {pkg}.gitTreeState=clean")


def build_key(go: str) -> str:
    digest = hashlib.sha256()
    for path in (MAIN_MODULE / "go.mod", MAIN_MODULE / "go.sum", MAIN_MODULE / "cmd/etcd/main.go",
                 ADAPTER_MODULE / "go.mod", ADAPTER_MODULE / "go.sum"):
        digest.update(path.read_bytes())
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    digest.update(version.encode() + link_flags().encode())
    return digest.hexdigest()[:16]


def bin_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "bin" / build_key(go_binary())


def built(cache: Path | None = None) -> dict | None:
    """The stamp of a complete build ({'seconds': …, …}) or None."""
    stamp = bin_dir(cache) / STAMP
    return json.loads(stamp.read_text()) if stamp.exists() else None


@contextmanager
def _lock(cache: Path, say):
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"[controlplane] waiting for the build already running (progress: {cache / BACKGROUND_OUT})")
            next_report = time.monotonic() + PROGRESS_EVERY_S
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(1)
                if time.monotonic() >= next_report:
                    next_report += PROGRESS_EVERY_S
                    say(f"[controlplane]   ... {_last_progress(cache / BACKGROUND_OUT)}")
        yield


def _last_progress(out: Path) -> str:
    try:
        lines = out.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "starting"
    progress = [line for line in lines if line.startswith("[controlplane]")]
    return progress[-1].removeprefix("[controlplane] ").strip() if progress else "starting"


def _run_go(args: list[str], cwd: Path, env: dict, log, say, what: str, total: int | None = None) -> None:
    """Run `go ARGS`; its output goes to the log, a progress line to `say` every 30 s."""
    log.write(f"$ go {' '.join(args)}   (in {cwd})\n")
    log.flush()
    started = time.monotonic()
    proc = subprocess.Popen([go_binary(), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    done = {"packages": 0}
    tail: list[str] = []

    def pump():
        for line in proc.stdout:
            log.write(line)
            tail.append(line)
            del tail[:-30]
            if not line.startswith((" ", "\t", "#", "go: ")):
                done["packages"] += 1

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while True:
        reader.join(PROGRESS_EVERY_S)
        if not reader.is_alive():  # go closed its output: it has finished
            break
        count = f", {done['packages']}/{total} packages compiled" if total else ""
        say(f"{what}: {time.monotonic() - started:.0f} s{count}")
    proc.wait()
    log.flush()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}); last lines of {log.name}:\n" + "".join(tail))


def _children_cpu_s() -> float:
    """CPU time of finished child processes (go and the compilers it ran): the build's cost
    without the other work sharing the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _list_packages(cwd: Path, env: dict, patterns: list[str], log) -> int:
    """`go list -deps`: downloads the modules the build needs (nothing for tests) and counts the
    packages it will compile, for the progress line."""
    result = subprocess.run([go_binary(), "list", "-deps", *patterns], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=1800)
    log.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"go list -deps {' '.join(patterns)} (in {cwd}) failed:\n{result.stderr[-3000:]}")
    return len(result.stdout.split())


def _print(line: str) -> None:
    print(line, flush=True)


def build(say=_print) -> Path:
    """Return the directory of complete binaries, building them first when missing."""
    cache = cache_dir()
    target = bin_dir(cache)
    if (target / STAMP).exists():
        return target
    with _lock(cache, say):
        if (target / STAMP).exists():  # built by whoever held the lock
            return target
        env = go_env(cache)
        cpu_before = _children_cpu_s()
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        started = time.monotonic()
        say(f"[controlplane] building Kubernetes {kubernetes_version()} control plane into {target} "
            f"(first build: 8 min on 2 idle cores; log: {cache / 'build.log'})")
        main, adapter = ["tool", "./cmd/etcd"], ["tool"]
        with open(cache / "build.log", "w") as log:
            t0 = time.monotonic()
            say("[controlplane] downloading modules")
            counts = (_list_packages(MAIN_MODULE, env, main, log), _list_packages(ADAPTER_MODULE, env, adapter, log))
            download_s = time.monotonic() - t0
            say(f"[controlplane] modules downloaded in {download_s:.0f} s")
            _run_go(["build", "-v", "-ldflags", link_flags(), "-o", f"{staging}/", *main], MAIN_MODULE, env, log,
                    say, "[controlplane] compiling Kubernetes, kubectl, etcd, kwok", counts[0])
            _run_go(["build", "-v", "-ldflags", "-s -w", "-o", str(staging / "prometheus-adapter"), *adapter],
                    ADAPTER_MODULE, env, log, say, "[controlplane] compiling prometheus-adapter", counts[1])
        missing = [b for b in BINARIES if not (staging / b).exists()]
        if missing:
            raise SystemExit(f"build finished without {missing}; see {cache / 'build.log'}")
        seconds = time.monotonic() - started
        cpu_s = _children_cpu_s() - cpu_before
        (staging / STAMP).write_text(json.dumps({
            "kubernetes": kubernetes_version(), "seconds": round(seconds, 1), "download_seconds": round(download_s, 1),
            "cpu_seconds": round(cpu_s),
            "finished": time.time(), "go": subprocess.run([go_binary(), "env", "GOVERSION"], capture_output=True,
                                                          text=True).stdout.strip()}))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        for stale in target.parent.iterdir():  # binaries of earlier pins (about 0.5 GB each)
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
        say(f"[controlplane] built in {seconds / 60:.1f} min ({download_s:.0f} s of it downloading modules; "
            f"{cpu_s / 60:.0f} CPU-min, so at least {cpu_s / 60 / (os.cpu_count() or 1):.0f} min on "
            f"{os.cpu_count()} idle cores)")
        return target


def build_keyed(target: Path, cache: Path, tag: str, steps, say=_print) -> None:
    """Build into the keyed directory `target` unless it is complete: under `cache`'s lock, into a
    staging directory, `steps(staging, log)` writing the files; then a stamp, the rename into place
    and the removal of other keys' directories beside it (earlier pins). `tag` names the build in
    its progress lines."""
    if (target / STAMP).exists():
        return
    with _lock(cache, say):
        if (target / STAMP).exists():  # built by whoever held the lock
            return
        started, cpu_before = time.monotonic(), _children_cpu_s()
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with open(cache / "build.log", "w") as log:
            steps(staging, log)
        seconds, cpu_s = time.monotonic() - started, _children_cpu_s() - cpu_before
        (staging / STAMP).write_text(json.dumps({"seconds": round(seconds, 1), "cpu_seconds": round(cpu_s),
                                                 "finished": time.time()}))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        for stale in target.parent.iterdir():
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
        say(f"[{tag}] built in {seconds / 60:.1f} min ({cpu_s / 60:.0f} CPU-min)")


def start_in_background(complete: bool | None = None) -> str:
    """Start `python -m controlplane build` detached unless what it builds exists (`complete`;
    by default: the control plane's binaries); return what it did."""
    if (built() is not None) if complete is None else complete:
        return f"control plane: reusing binaries in {bin_dir()}"
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / BACKGROUND_OUT, "w") as out:
        subprocess.Popen([sys.executable, "-m", "controlplane", "build"], cwd=ROOT, stdout=out,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return f"control plane: building in the background (progress: {cache / BACKGROUND_OUT})"
