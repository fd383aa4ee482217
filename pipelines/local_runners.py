"""The kfp.local runners a local pipeline run can use, by name: `subprocess` or `docker`.

`subprocess` runs each task as a process of this virtual environment (it has the same lock and
the project installed, as the component image does). `docker` runs each task in the component
image with kfp.local's DockerRunner, as a cluster would. kfp.local mounts only the pipeline root
into the task containers, so here each task container also gets:
  - the data file's directory (read-only), the model repository (read-write) and a curated
    schema given by absolute path (read-only), mounted at the same absolute paths, which the
    arguments are rewritten to;
  - the caller's UID and GID, so what the tasks write (artifacts, pushed versions) belongs to
    whoever started the run, as with the subprocess runner; HOME is /tmp for the same reason;
  - the image reference in FLYWHEEL_IMAGE, for the lineage record;
  - removal once the task's exit code is read.
Paths that are object-store URLs (gs://, s3://) are passed through untouched.
"""
from __future__ import annotations

import os

from flywheel import provenance, storage

RUNNERS = ("subprocess", "docker")
TASK_ENV = {"HOME": "/tmp", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
_mounts: dict = {}  # host path -> docker-py volume spec, for the run in progress (set by init)


def init(name: str, arguments: dict, pipeline_root: str) -> dict:
    """`kfp.local.init` with the runner called `name`; returns the pipeline arguments as that
    runner's tasks must see them."""
    from kfp import local

    if name == "subprocess":
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
        return arguments
    if name != "docker":
        raise ValueError(f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}")
    arguments, mounts = container_view(arguments)
    os.makedirs(pipeline_root, exist_ok=True)  # by the caller, before the engine would create it as root
    _mounts.clear()
    _mounts.update(mounts)
    _install_task_containers()
    local.init(runner=local.DockerRunner(), pipeline_root=pipeline_root, raise_on_error=True)
    return arguments


def container_view(arguments: dict) -> tuple[dict, dict]:
    """Arguments with local paths made absolute, and the bind mounts that make them visible:
    `data_path`'s folder, `push.model_repository`, and `schema.curated` when it is a file given by
    absolute path outside those (a relative one is the schema packaged with the project)."""
    arguments, mounts = dict(arguments), {}
    data_path = arguments.get("data_path", "")
    if data_path and not storage.is_remote(data_path) and not arguments.get("data_rev"):
        data_path = storage.absolute(data_path)
        if not os.path.exists(data_path):
            raise FileNotFoundError(f"data file not found: {data_path}")
        arguments["data_path"] = data_path
        mounts[os.path.dirname(data_path)] = {"bind": os.path.dirname(data_path), "mode": "ro"}
    push = dict(arguments.get("push") or {})
    # The training pipeline names the repository in its push section, the batch pipeline on its own.
    repository = push.get("model_repository", "") or arguments.get("model_repository", "")
    if repository and not storage.is_remote(repository):
        repository = storage.absolute(repository)
        os.makedirs(repository, exist_ok=True)  # created by the caller, so it owns it
        if "push" in arguments:
            arguments["push"] = {**push, "model_repository": repository}
        else:
            arguments["model_repository"] = repository
        mounts[repository] = {"bind": repository, "mode": "rw"}
    curated = (arguments.get("schema") or {}).get("curated", "")
    if curated and os.path.isabs(curated) and not any(curated.startswith(m + os.sep) for m in mounts):
        if not os.path.isfile(curated):
            raise FileNotFoundError(f"curated schema not found: {curated}")
        mounts[curated] = {"bind": curated, "mode": "ro"}
    return arguments, mounts


def _task_containers(client, image: str, command: list, volumes: dict) -> int:
    """kfp.local's run_docker_container, plus the mounts, user and clean-up described above."""
    import docker

    from kfp.local import docker_task_handler

    image = docker_task_handler.add_latest_tag_if_not_present(image)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        print(f"image {image} is not present locally; pulling it (build it here with `make images`)")
        repository, tag = image.rsplit(":", 1)
        client.images.pull(repository=repository, tag=tag)
    container = client.containers.run(
        image=image, command=command, detach=True, volumes={**_mounts, **volumes},
        user=f"{os.getuid()}:{os.getgid()}", environment={**TASK_ENV, provenance.IMAGE_ENV: image})
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return container.wait()["StatusCode"]
    finally:
        container.remove(force=True)



def _install_task_containers() -> None:
    # kfp 2.13's DockerRunner takes no options; its task handler calls this module-level
    # function for every task, so that is the one place to add mounts and a user.
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = _task_containers
