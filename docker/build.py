"""Build the Flywheel images with the local Docker engine (`make images`).

    python docker/build.py [--registry R] [--tag T] [TARGET ...]   # default targets: component sidecar

For each target, a wheelhouse is prepared on the host from the target's lock
(docker/wheelhouse/<name>/, with pip; kept between builds and refreshed when the lock changes),
so the build itself needs no package index. Then `docker build --target` with BuildKit, and at
the end each image's size and what it adds over its base.

The base image is docker/Dockerfile's `ARG BASE_IMAGE` (pinned by digest) when it is present
or can be pulled. Where it cannot (no registry reachable), a Debian bookworm base is built
locally with debootstrap (`--variant=minbase --include=python3,python3-venv`), imported as
flywheel-debian-base:bookworm and used instead; the build says so.

component-gpu is opt-in (`make images-gpu`): its CUDA wheels are several GB.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from flywheel import names

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
WHEELHOUSE = ROOT / "docker" / "wheelhouse"
BUILD_LOCK = ROOT / "docker" / "requirements-build.lock"
LOG_DIR = ROOT / "build" / "images"
REPORT = LOG_DIR / "images.json"
LOCAL_BASE = "flywheel-debian-base:bookworm"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Left out of the local base: package lists and caches, documentation, translations (what the
# Debian "slim" images drop too); nothing Python or the images need.
BASE_TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
             "usr/share/locale")
SIDECAR_GOAL_BYTES = 200e6
# Wheels for the wheelhouses, shared by every checkout on the machine (like pip's or uv's cache).
WHEEL_CACHE = Path(os.environ.get("FLYWHEEL_WHEEL_CACHE")
                   or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flywheel" / "wheels")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    wheelhouses: tuple[tuple[str, str], ...]   # (docker/wheelhouse/<name>, lock) pairs its build mounts


TARGETS = {
    "component": Target("component", (("component", "requirements.lock"),)),
    "sidecar": Target("sidecar", (("sidecar", "docker/requirements-sidecar.lock"),)),
    "component-gpu": Target("component-gpu", (("component", "requirements.lock"),
                                              ("gpu", "docker/requirements-gpu.lock"))),
}
DEFAULT_TARGETS = ("component", "sidecar")


# The names the pipeline and the manifests use (flywheel/names.py): <registry>/flywheel-<target>:<tag>.
DEFAULT_REGISTRY, DEFAULT_TAG = names.COMPONENT_IMAGE.rsplit("/", 1)[0], names.COMPONENT_IMAGE.rsplit(":", 1)[1]


def image_name(target: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> str:
    return f"{registry}/flywheel-{target}:{tag}"


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def say(message: str) -> None:
    print(message, flush=True)


def fail(message: str, log: Path | None = None) -> NoReturn:
    if log is not None and log.exists():
        tail = log.read_text(errors="replace").splitlines()[-40:]
        message += "\n  " + "\n  ".join(tail) + f"\n(full log: {log.relative_to(ROOT)})"
    raise SystemExit(f"error: {message}")


# --- the docker client -------------------------------------------------------------------------
def docker_cli() -> list[str]:
    """A client that builds with BuildKit, and how to call its build. Clients from 23 on need the
    buildx plugin for that (without it they fall back to the legacy builder, which has no build
    mounts); older ones, like Debian's docker.io 20.10, have BuildKit built in."""
    for cli in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
        if not os.access(cli, os.X_OK):
            continue
        if run([cli, "buildx", "version"]).returncode == 0:
            return [cli, "buildx", "build", "--load"]
        version = run([cli, "version", "--format", "{{.Client.Version}}"]).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return [cli, "build"]
    fail("no docker client here builds with BuildKit: install the buildx plugin (docker-buildx) "
         "or Debian's docker.io")


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run([shutil.which("docker") or "/usr/bin/docker", *args], **kwargs)


def image_size(image: str) -> int | None:
    result = docker("image", "inspect", "--format", "{{.Size}}", image)
    return int(result.stdout) if result.returncode == 0 else None


# --- the base image ----------------------------------------------------------------------------
def pinned_base() -> str:
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if not match:
        fail(f"{DOCKERFILE.relative_to(ROOT)}: no `ARG BASE_IMAGE=` line")
    return match.group(1)


def resolve_base(requested: str) -> str:
    """`requested` if present or pullable, else the local Debian base (built when missing)."""
    if image_size(requested) is not None:
        return requested
    pull = docker("pull", "--quiet", requested, timeout=600)
    if pull.returncode == 0:
        return requested
    reason = (pull.stderr.strip().splitlines() or ["no reason given"])[-1]
    if image_size(LOCAL_BASE) is not None:
        say(f"base image {requested} cannot be pulled ({reason}); using the local Debian base {LOCAL_BASE}")
        return LOCAL_BASE
    say(f"base image {requested} cannot be pulled ({reason});\n"
        f"  building a local Debian bookworm base with debootstrap instead ({LOCAL_BASE}, about a minute)")
    build_local_base()
    return LOCAL_BASE


def build_local_base() -> None:
    started = time.monotonic()
    if not shutil.which("debootstrap"):
        say("  installing Debian's debootstrap")
        for step in (["apt-get", "update", "-qq"],
                     ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq",
                      "--no-install-recommends", "debootstrap"]):
            if run([*sudo(), *step]).returncode != 0:
                fail("cannot install debootstrap (apt-get as root, or sudo without a password, is needed)")
    log = LOG_DIR / "debootstrap.log"
    rootfs = Path(tempfile.mkdtemp(prefix="debian-base-", dir=LOG_DIR))
    try:
        with log.open("w") as out:
            result = subprocess.run([*sudo(), "debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                                     "bookworm", str(rootfs), DEBIAN_MIRROR], stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            fail(f"debootstrap failed (mirror {DEBIAN_MIRROR}; set DEBIAN_MIRROR to change it)", log)
        run([*sudo(), "rm", "-rf", *(str(rootfs / p) for p in BASE_TRIM)], check=True)
        tar = subprocess.Popen([*sudo(), "tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([shutil.which("docker") or "/usr/bin/docker", "import",
                                   "--message", f"debootstrap --variant=minbase bookworm ({DEBIAN_MIRROR})",
                                   "-", LOCAL_BASE], stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            fail(f"docker import of the local base failed: {imported.stderr.strip()}")
    finally:
        run([*sudo(), "rm", "-rf", str(rootfs)])
    say(f"  local base {LOCAL_BASE}: {image_size(LOCAL_BASE) / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")


# --- wheelhouses -------------------------------------------------------------------------------
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)")


def _key(name: str, version: str) -> tuple[str, str]:
    from packaging.utils import canonicalize_name, canonicalize_version

    return canonicalize_name(name), canonicalize_version(version)


def _wheels(directory: Path) -> dict[tuple[str, str], Path]:
    from packaging.utils import parse_wheel_filename

    found = {}
    for wheel in directory.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        found[_key(name, str(version))] = wheel
    return found


def prepare_wheelhouse(name: str, lock: str) -> None:
    """docker/wheelhouse/<name>/: one wheel for every pin of `lock`, so the build installs with
    --no-index. Wheels come from a cache shared by every checkout (WHEEL_CACHE), so a fresh clone
    reuses the very same files and the build's cached layers stay valid (a wheel built again from
    source would differ byte for byte); pins the cache lacks are fetched (or, for the few packages
    published as source only, built) with pip. Wheels the lock no longer pins are removed."""
    directory, lock_path = WHEELHOUSE / name, ROOT / lock
    pins = {}
    for line in lock_path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[_key(*match.groups())] = line.strip()
    have = _wheels(directory)
    for key, wheel in have.items():
        if key not in pins:
            wheel.unlink()
    missing = {key: line for key, line in pins.items() if key not in have}
    if not missing:
        return
    started = time.monotonic()
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    to_fetch = [line for key, line in missing.items() if key not in _wheels(WHEEL_CACHE)]
    if to_fetch:
        log = LOG_DIR / f"wheelhouse-{name}.log"
        requirements = LOG_DIR / f"wheelhouse-{name}.txt"
        requirements.write_text("\n".join(to_fetch) + "\n")
        with log.open("w") as out:
            result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--progress-bar", "off",
                                     "-w", str(WHEEL_CACHE), "-r", str(requirements)],
                                    stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            fail(f"could not prepare the wheelhouse for {lock}", log)
    cached = _wheels(WHEEL_CACHE)
    for key in missing:
        source, target = cached[key], directory / cached[key].name
        try:
            os.link(source, target)  # same file system: no copy
        except OSError:
            shutil.copy2(source, target)
    size = sum(w.stat().st_size for w in directory.glob("*.whl"))
    say(f"wheelhouse {name}: {len(missing)} of {len(pins)} wheels added from {lock}, {len(to_fetch)} of them "
        f"downloaded or built ({time.monotonic() - started:.0f} s; {size / 1e6:.0f} MB in all; cache {WHEEL_CACHE})")


# --- images ------------------------------------------------------------------------------------
def git_sha() -> str:
    """The checkout's revision, recorded in the images (FLYWHEEL_GIT_SHA); "" outside git."""
    result = run(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    return result.stdout.strip() if result.returncode == 0 else ""


def build_image(build_cmd: list[str], target: str, base: str, image: str) -> float:
    log = LOG_DIR / f"{target}.log"
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run([*build_cmd, "--progress=plain", "-f", str(DOCKERFILE), "--target", target,
                                 "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"GIT_SHA={git_sha()}",
                                 "-t", image, str(ROOT)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if result.returncode != 0:
        fail(f"docker build --target {target} failed", log)
    seconds = time.monotonic() - started
    say(f"built {image} in {seconds:.0f} s (log: {log.relative_to(ROOT)})")
    return seconds


def human(size: float) -> str:
    return f"{size / 1e9:.2f} GB" if abs(size) >= 1e9 else f"{size / 1e6:.0f} MB"


def report(images: dict[str, str], base: str, seconds: dict[str, float], total: float) -> dict:
    base_size = image_size(base) or 0
    rows, data = [], {"base": base, "base_size": base_size, "seconds": round(total, 1), "images": {}}
    for target, image in images.items():
        size = image_size(image) or 0
        added = size - base_size
        note = ""
        if target == "sidecar":
            note = f"goal <= {human(SIDECAR_GOAL_BYTES)} added: {'met' if added <= SIDECAR_GOAL_BYTES else 'MISSED'}"
        rows.append((image, human(size), "+" + human(added), f"{seconds[target]:.0f} s", note))
        data["images"][target] = {"image": image, "size": size, "added": added, "seconds": round(seconds[target], 1)}
    rows.append((f"{base} (base)", human(base_size), "", "", ""))
    header = ("image", "size", "over base", "build", "")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header, *rows]:
        say("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    say(f"images ready in {total:.0f} s")
    REPORT.write_text(json.dumps(data, indent=2) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*",
                        metavar="TARGET", help=f"any of {sorted(TARGETS)} (default: {' '.join(DEFAULT_TARGETS)})")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY)
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--base", default="", help="base image (default: docker/Dockerfile's pinned BASE_IMAGE)")
    args = parser.parse_args(argv)
    targets = args.targets or list(DEFAULT_TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {sorted(TARGETS)}")
    started = time.monotonic()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    build_cmd = docker_cli()
    info = docker("info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0:
        fail("no Docker daemon answers; `make images` starts one (docker/engine.sh)")
    if "component-gpu" in targets:
        say("component-gpu: its wheelhouse holds the CUDA and cuDNN wheels, several GB to download once")
    base = resolve_base(args.base or pinned_base())
    prepare_wheelhouse("build", str(BUILD_LOCK.relative_to(ROOT)))
    images, seconds = {}, {}
    for target in targets:
        for name, lock in TARGETS[target].wheelhouses:
            prepare_wheelhouse(name, lock)
        images[target] = image_name(target, args.registry, args.tag)
        seconds[target] = build_image(build_cmd, target, base, images[target])
    report(images, base, seconds, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
