"""Where the code of a run came from: the project's git revision (and whether the checkout had
uncommitted changes), the installed package version, and the image, for the lineage record.

In a container image there is no git checkout: the image build passes the revision in
FLYWHEEL_GIT_SHA, and a cluster's pod spec may pass the image reference in FLYWHEEL_IMAGE.
"""
from __future__ import annotations

import os
from importlib import metadata

from flywheel.data_version import git
from flywheel.params import ROOT

GIT_SHA_ENV = "FLYWHEEL_GIT_SHA"
IMAGE_ENV = "FLYWHEEL_IMAGE"


def code_version() -> dict:
    sha = git(["rev-parse", "HEAD"], str(ROOT)) or os.environ.get(GIT_SHA_ENV, "")
    dirty = bool(git(["status", "--porcelain", "--untracked-files=no"], str(ROOT))) if sha else None
    try:
        package = metadata.version("flywheel")
    except metadata.PackageNotFoundError:
        package = ""
    return {"git_sha": sha, "dirty": dirty, "package": package, "image": os.environ.get(IMAGE_ENV, "")}
