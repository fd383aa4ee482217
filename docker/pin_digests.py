"""Write the registry digest of every pinned image into the files that pin it.

Images are pinned in three places: the kustomize `images:` entries of manifests/base and of
the gpu overlay (`newName` + `newTag` + `digest`), and the Dockerfile's base image
(`ARG BASE_IMAGE=name:tag@sha256:…`).
This resolves each `name:tag` with a registry client (default `crane digest`, from
go-containerregistry; `docker buildx imagetools inspect --format '{{json .Manifest.Digest}}'`
works too) and rewrites only the digest, keeping comments and layout.

    python docker/pin_digests.py                 # resolve and rewrite
    python docker/pin_digests.py --check         # exit 1 if a placeholder digest is left
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZATIONS = ("manifests/base/kustomization.yaml", "manifests/overlays/gpu/kustomization.yaml",
                  "manifests/training/kustomization.yaml")
DOCKERFILES = ("docker/Dockerfile",)
PLACEHOLDER = "sha256:" + "0" * 64
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# An images: entry as written in our kustomizations: newName, newTag, then (comments and) digest.
KUSTOMIZE_IMAGE = re.compile(
    r"(newName:\s*(?P<name>\S+)\s*\n\s*newTag:\s*(?P<tag>\S+)\s*\n(?:\s*#.*\n)*\s*digest:\s*)(?P<digest>\S+)")
# A Dockerfile pin: `FROM name:tag@sha256:…` or a base-image build argument's default,
# `ARG BASE_IMAGE=name:tag@sha256:…`.
FROM_LINE = re.compile(r"^((?:FROM\s+|ARG\s+\w+=)(?P<name>[^\s:@]+):(?P<tag>[^\s@]+)@)(?P<digest>sha256:[0-9a-f]{64})",
                       re.MULTILINE)


def pinned(root: Path = ROOT) -> list[tuple[Path, str, str, str]]:
    """[(file, name, tag, digest)] for every pinned image."""
    found = []
    for rel, pattern in [(k, KUSTOMIZE_IMAGE) for k in KUSTOMIZATIONS] + [(d, FROM_LINE) for d in DOCKERFILES]:
        path = root / rel
        for m in pattern.finditer(path.read_text()):
            found.append((path, m["name"], m["tag"], m["digest"]))
    return found


def resolve(reference: str, resolver: str) -> str:
    result = subprocess.run([*shlex.split(resolver), reference], capture_output=True, text=True, timeout=120)
    digest = result.stdout.strip().strip('"')
    if result.returncode != 0 or not DIGEST.match(digest):
        raise SystemExit(f"cannot resolve {reference} with `{resolver}`: {result.stderr.strip() or digest!r}")
    return digest


def pin(root: Path, resolver: str) -> list[str]:
    """Resolve every pin first, then rewrite: a failed lookup leaves every file as it was."""
    found = pinned(root)
    digests = {(name, tag): resolve(f"{name}:{tag}", resolver) for _, name, tag, _ in found}
    changes = [f"{p.relative_to(root)}: {n}:{t} -> {digests[(n, t)]}" for p, n, t, d in found if digests[(n, t)] != d]
    for path in sorted({p for p, *_ in found}):
        pattern = FROM_LINE if path.name == "Dockerfile" else KUSTOMIZE_IMAGE
        text = path.read_text()
        new = pattern.sub(lambda m: m.group(1) + digests[(m["name"], m["tag"])], text)
        if new != text:
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(new)
            tmp.replace(path)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolver", default="crane digest", help="command that prints the digest of NAME:TAG")
    parser.add_argument("--check", action="store_true", help="only report placeholder digests")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    if args.check:
        left = [f"{p.relative_to(args.root)}: {n}:{t}" for p, n, t, d in pinned(args.root) if d == PLACEHOLDER]
        for line in left:
            print(f"placeholder digest: {line}", file=sys.stderr)
        return 1 if left else 0
    for line in pin(args.root, args.resolver) or ["all digests already current"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
