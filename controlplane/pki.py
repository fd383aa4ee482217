"""Certificates and keys for a loopback control plane, made with openssl.

One CA signs the API server's serving certificate and every client certificate (the user is the
certificate's CN, its groups the O fields, as Kubernetes reads them). A second CA signs the
front proxy's client certificate: the API server presents it when it forwards a request to an
aggregated API (prometheus-adapter), which trusts only that CA for the forwarded user. EC P-256
keys throughout: generated in milliseconds, accepted by every component, and the service-account
tokens are signed ES256.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "30"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is not on PATH (Debian package openssl)")
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SystemExit(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def _subject(common_name: str, groups: tuple[str, ...]) -> str:
    return "".join(f"/O={g}" for g in groups) + f"/CN={common_name}"


class PKI:
    """Files under `root`; each method writes its pair once and returns it."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def ca(self, name: str) -> Pair:
        pair = Pair(self.root / f"{name}.crt", self.root / f"{name}.key")
        if not pair.cert.exists():
            _openssl("req", "-x509", *EC_KEY, "-keyout", pair.key.name, "-out", pair.cert.name, "-days", DAYS,
                     "-subj", f"/CN=flywheel-test-{name}",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.root)
        return pair

    def issue(self, name: str, ca: Pair, common_name: str, groups: tuple[str, ...] = (),
              server_names: tuple[str, ...] = ()) -> Pair:
        """A leaf certificate: a server certificate when `server_names` (DNS names or IPs) are
        given, else a client certificate for user `common_name` in `groups`."""
        pair = Pair(self.root / f"{name}.crt", self.root / f"{name}.key")
        if pair.cert.exists():
            return pair
        if server_names:
            alt = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in server_names)
            extensions = ["-addext", f"subjectAltName={alt}", "-addext", "extendedKeyUsage=serverAuth"]
        else:
            extensions = ["-addext", "extendedKeyUsage=clientAuth"]
        _openssl("req", "-x509", *EC_KEY, "-keyout", pair.key.name, "-out", pair.cert.name, "-days", DAYS,
                 "-CA", str(ca.cert), "-CAkey", str(ca.key), "-subj", _subject(common_name, groups),
                 "-addext", "basicConstraints=critical,CA:FALSE",
                 "-addext", "keyUsage=critical,digitalSignature", *extensions, cwd=self.root)
        return pair

    def signing_key(self, name: str) -> Pair:
        """A bare key pair (`cert` is the public key), for signing service-account tokens."""
        pair = Pair(self.root / f"{name}.pub", self.root / f"{name}.key")
        if not pair.cert.exists():
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", pair.key.name,
                     cwd=self.root)
            _openssl("pkey", "-in", pair.key.name, "-pubout", "-out", pair.cert.name, cwd=self.root)
        return pair
