"""Push: a blessed model becomes a new integer version in the model repository, atomically.

Follows TFX's Pusher: check the blessing; skip when the same data already produced the latest
version (unless forced); stage the whole version under a name TF Serving ignores
(names.STAGING_PREFIX), then rename it to its integer version, the one step the server sees;
always record pushed or not pushed, with the reason. Works on local paths and gs:// / s3://
(tf.io.gfile) through flywheel.model_repository.
"""

import dataclasses
import json
import os
import shutil
import time
import uuid

from kfp import dsl

from flywheel import model_repository as repo
from components.kfp_component import flywheel_component
from flywheel import names


@dataclasses.dataclass(frozen=True)
class PushResult:
    pushed: bool
    reason: str
    version: int | None = None
    path: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def _copy_tree(src: str, dst: str) -> None:
    """Copy a local directory to a local or remote destination."""
    if not repo.is_remote(dst):
        shutil.copytree(src, dst)
        return
    import tensorflow as tf

    for root, _, files in os.walk(src):
        target = repo.join(dst, os.path.relpath(root, src)) if root != src else dst
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), repo.join(target, name), overwrite=True)


def _write_text(path: str, text: str) -> None:
    if repo.is_remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
    else:
        with open(path, "w") as f:
            f.write(text)


def remove_stale_staging(repository: str, model_name: str) -> list[str]:
    """Staging directories left by a push that was killed mid-copy. A single writer pushes at a
    time (one pipeline per model), so any staging directory found before a push is stale."""
    model_dir = repo.model_dir(repository, model_name)
    stale = [n for n in repo.listdir(model_dir) if n.startswith(names.STAGING_PREFIX)]
    for name in stale:
        repo.rmtree(repo.join(model_dir, name))
    return stale


def publish(source_dir: str, repository: str, model_name: str, metadata_updates: dict,
            extra_files: dict[str, str]) -> tuple[int, str]:
    """Copy a SavedModel plus extra files into the next integer version; returns (version, path).

    `extra_files` maps a file name under assets.extra/ to a local source path."""
    from flywheel import features

    remove_stale_staging(repository, model_name)
    latest = repo.latest_version(repository, model_name)
    version = (latest or 0) + 1
    model_dir = repo.model_dir(repository, model_name)
    repo.makedirs(model_dir)
    staging = repo.join(model_dir, f"{names.STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    final = repo.version_dir(repository, model_name, version)
    try:
        _copy_tree(source_dir, staging)
        extra = repo.join(staging, names.EXTRA_DIR)
        repo.makedirs(extra)
        for name, path in extra_files.items():
            _copy_tree_file(path, repo.join(extra, name))
        metadata = features.read_model_metadata(source_dir)
        metadata.update(metadata_updates, pushed_at=time.time(), version=version)
        _write_text(repo.join(extra, names.MODEL_METADATA), json.dumps(metadata, indent=2, sort_keys=True))
        if repo.exists(final):
            raise FileExistsError(f"{final} appeared while pushing: another push is running for {model_name}")
        repo.rename(staging, final)  # the only step TF Serving can observe
    except BaseException:
        repo.rmtree(staging)
        raise
    return version, final


def _copy_tree_file(src: str, dst: str) -> None:
    if repo.is_remote(dst):
        import tensorflow as tf

        tf.io.gfile.copy(src, dst, overwrite=True)
    else:
        shutil.copyfile(src, dst)


def version_trained_on(repository: str, model_name: str, data_version: str) -> int | None:
    """The newest version whose training data had this version, if any."""
    for version in reversed(repo.versions(repository, model_name)):
        path = repo.extra_path(repository, model_name, version, names.MODEL_METADATA)
        if repo.exists(path) and json.loads(repo.read_bytes(path)).get("data_version") == data_version:
            return version
    return None


def run(model_dir: str, evaluation_dir: str, statistics_dir: str, schema_path: str, repository: str,
        model_name: str, data_version: str = "", force: bool = False) -> PushResult:
    with open(os.path.join(evaluation_dir, names.BLESSING_FILE)) as f:
        blessing = json.load(f)
    if not blessing["blessed"]:
        return PushResult(False, f"not blessed: {blessing['reason']}")
    if data_version and not force:
        trained_on_same = version_trained_on(repository, model_name, data_version)
        if trained_on_same is not None:
            return PushResult(False, f"version {trained_on_same} was trained on the same data ({data_version}); "
                                     "not pushed (force to push anyway)", trained_on_same,
                              repo.version_dir(repository, model_name, trained_on_same))
    with open(os.path.join(evaluation_dir, "metrics.json")) as f:
        evaluation = json.load(f)
    version, path = publish(
        model_dir, repository, model_name,
        {"data_version": data_version, "metrics": evaluation["metrics"], "blessing": blessing},
        {names.BASELINE_STATS: os.path.join(statistics_dir, names.TRAIN, names.STATS_FILE),
         names.BASELINE_SCHEMA: schema_path,
         names.EVAL_PREDICTIONS: os.path.join(evaluation_dir, names.EVAL_PREDICTIONS),
         names.MODEL_CARD: os.path.join(evaluation_dir, names.MODEL_CARD)})
    return PushResult(True, blessing["reason"], version, path)


def rollback(repository: str, model_name: str, to_version: int) -> PushResult:
    """Make an earlier version the served one by publishing a copy of it as the newest version.

    TF Serving's default `latest` policy and the sidecar both follow the highest version, and a
    copy keeps history append-only: nothing the server has loaded is deleted under it."""
    available = repo.versions(repository, model_name)
    if to_version not in available:
        raise ValueError(f"model {model_name} has no version {to_version} in {repository} (versions: {available})")
    source = repo.version_dir(repository, model_name, to_version)
    if repo.is_remote(source):
        raise ValueError(f"rollback reads the version it copies from a local path; {source} is remote: "
                         "run it where the repository is mounted (for example in the TF Serving pod's volume)")
    version, path = publish(source, repository, model_name, {"rolled_back_from": to_version}, {})
    return PushResult(True, f"rolled back: version {version} is a copy of version {to_version}", version, path)


@flywheel_component
def push_component(model: dsl.Input[dsl.Model], evaluation: dsl.Input[dsl.Artifact],
                   statistics: dsl.Input[dsl.Artifact], schema: dsl.Input[dsl.Artifact],
                   examples: dsl.Input[dsl.Dataset], model_repository: str, model_name: str, force: bool,
                   pushed: dsl.Output[dsl.Artifact]):
    import os

    from components.push import run
    from flywheel import names

    result = run(model.path, evaluation.path, statistics.path, os.path.join(schema.path, names.SCHEMA_FILE),
                 model_repository, model_name, data_version=examples.metadata.get("data_version", ""), force=force)
    print(f"[push] {'pushed version ' + str(result.version) if result.pushed else 'not pushed'}: {result.reason}",
          flush=True)
    os.makedirs(pushed.path, exist_ok=True)
    with open(os.path.join(pushed.path, names.PUSH_RESULT_FILE), "w") as f:
        f.write(result.to_json())
    pushed.metadata.update({"pushed": result.pushed, "version": result.version, "reason": result.reason})
