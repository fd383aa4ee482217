"""The component image runs a pipeline step exactly as Kubeflow would start it: the image, command
and args of the compiled pipeline (pipelines/training_pipeline.yaml), with only the `{{$}}`
placeholder filled in by the executor input a KFP launcher would pass. Then the same step
through kfp.local's DockerRunner as `make run RUNNER=docker` uses it (pipelines/local_runners.py).
"""
import hashlib
import json
import os
import subprocess

import pytest
import yaml
from kfp import dsl

from flywheel import artifacts, names
from flywheel.params import DataParams
from tools import datagen
from pipelines.remote import PIPELINE_YAML
from tests.support.containers import run_container


STEP = "ingest-component"
ROWS = 400


@dsl.component(base_image=names.COMPONENT_IMAGE, install_kfp_package=False)
def code_version_in_task() -> str:
    """What a task's lineage record would say about its code (flywheel/provenance.py)."""
    import json

    from flywheel import provenance
    return json.dumps(provenance.code_version())


def compiled_step(step: str) -> tuple[dict, dict, dict]:
    """(executor container spec, component input definitions, pipeline parameters) of one step
    of the compiled YAML."""
    with open(PIPELINE_YAML) as f:
        spec = next(yaml.safe_load_all(f))  # the pipeline spec; a platform spec follows it
    container = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
    return (container, spec["components"][f"comp-{step}"]["inputDefinitions"],
            spec["root"]["inputDefinitions"]["parameters"])


def executor_input(inputs: dict, given: dict, artifact: str, out_dir: str) -> dict:
    """The executor input a KFP launcher passes: parameter values (defaults where not given), the
    output artifact's URI and the file the executor writes its output metadata to."""
    values = {name: given.get(name, definition.get("defaultValue"))
              for name, definition in inputs["parameters"].items()}
    assert None not in values.values(), values
    return {"inputs": {"parameterValues": values},
            "outputs": {"artifacts": {artifact: {"artifacts": [{
                "name": artifact, "type": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"},
                "uri": f"{out_dir}/{artifact}", "metadata": {}}]}},
                "outputFile": f"{out_dir}/executor_output.json"}}


@pytest.fixture
def span(tmp_path) -> str:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "span-001.csv"
    datagen.generate_span(DataParams(rows_per_span=ROWS), 1).to_csv(path, index=False)
    data.chmod(0o755)
    tmp_path.chmod(0o755)
    return str(path)


def test_ingest_runs_in_the_image_with_the_compiled_command_line(docker_client, images, span, tmp_path):
    container_spec, inputs, pipeline_parameters = compiled_step(STEP)
    assert container_spec["image"] == names.COMPONENT_IMAGE == images["component"]
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 10001, 10001) if os.geteuid() == 0 else out.chmod(0o777)
    # what the pipeline passes the step: the data path, no DVC revision, its `ingest` and `scale`
    # sections as compiled
    given = {"data_path": "/data/span-001.csv", "data_rev": "", "params": pipeline_parameters["ingest"]["defaultValue"],
             "scale": pipeline_parameters["scale"]["defaultValue"]}
    filled = json.dumps(executor_input(inputs, given, "examples", "/out"))
    assert container_spec["args"].count("{{$}}") == 1
    args = [filled if arg == "{{$}}" else arg for arg in container_spec["args"]]
    assert not [a for a in [*container_spec["command"], *args] if "{{$" in a]
    container = run_container(docker_client, container_spec["image"], entrypoint=container_spec["command"],
                              command=args, volumes={os.path.dirname(span): {"bind": "/data", "mode": "ro"},
                                                     str(out): {"bind": "/out", "mode": "rw"}})
    try:
        status = container.wait(timeout=600)["StatusCode"]
        log = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status == 0, log[-4000:]
    result = json.loads((out / "executor_output.json").read_text())
    metadata = result["artifacts"]["examples"]["artifacts"][0]["metadata"]
    assert metadata["data_version"] == "md5:" + hashlib.md5(open(span, "rb").read()).hexdigest()
    splits = {split: artifacts.read_split(out / "examples", split) for split in names.SPLITS}
    assert sum(len(frame) for frame in splits.values()) == metadata["rows_read"] - metadata["rows_without_label"]
    assert all("rider_email" not in frame.columns for frame in splits.values())
    # written by the image's user, as on a cluster
    assert {(path.stat().st_uid, path.stat().st_gid) for path in out.rglob("*")} == {(10001, 10001)}


def test_docker_runner_mounts_data_and_repository_and_writes_as_the_caller(docker_client, images, span, tmp_path):
    from kfp import local

    from components.ingest import ingest_component
    from pipelines import local_runners

    pipeline_root = tmp_path / "pipeline_root"
    arguments = local_runners.init("docker", {"data_path": os.path.relpath(span),
                                              "push": {"model_repository": str(tmp_path / "repo")}}, str(pipeline_root))
    assert arguments["data_path"] == span and os.path.isdir(arguments["push"]["model_repository"])
    before = {c.id for c in docker_client.containers.list(all=True)}
    try:
        task = ingest_component(data_path=arguments["data_path"], data_rev="",
                                params={"label": "big_tipper", "pii_columns": ["rider_email"]}, scale={})
    finally:
        local.init(runner=local.SubprocessRunner(use_venv=False))  # leave no docker runner behind
    examples = task.outputs["examples"]
    assert examples.metadata["data_version"] == "md5:" + hashlib.md5(open(span, "rb").read()).hexdigest()
    written = list(pipeline_root.rglob("*"))
    assert written and {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(os.getuid(), os.getgid())}
    assert {c.id for c in docker_client.containers.list(all=True)} == before, "task containers left behind"


def test_docker_runner_tasks_know_their_image_and_revision(docker_client, images, tmp_path):
    from kfp import local

    from pipelines import local_runners

    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    local_runners.init("docker", {}, str(tmp_path / "pipeline_root"))
    try:
        task = code_version_in_task()
    finally:
        local.init(runner=local.SubprocessRunner(use_venv=False))
    code = json.loads(task.output)
    # no git checkout in the image: the revision comes from the build, the image from the runner
    assert code["git_sha"] == sha
    assert code["image"] == images["component"] and code["package"] == "0.1.0"


def test_container_view_of_the_arguments(tmp_path):
    from pipelines.local_runners import container_view

    span, schema = tmp_path / "spans" / "s.csv", tmp_path / "schemas" / "schema.pbtxt"
    for path in (span, schema):
        path.parent.mkdir()
        path.write_text("x\n")
    arguments = {"data_path": str(span), "push": {"model_repository": str(tmp_path / "repo"), "model_name": "m"},
                 "schema": {"curated": str(schema)}, "train": {"epochs": 3, "min_steps": 0}}
    view, mounts = container_view(arguments)
    assert view == arguments and (tmp_path / "repo").is_dir()
    assert mounts == {str(span.parent): {"bind": str(span.parent), "mode": "ro"},
                      str(tmp_path / "repo"): {"bind": str(tmp_path / "repo"), "mode": "rw"},
                      str(schema): {"bind": str(schema), "mode": "ro"}}
    packaged = {"schema": {"curated": "flywheel/curated/schema.pbtxt"}}  # resolved inside the image
    assert container_view(packaged) == (packaged, {})
    remote = {"data_path": "gs://bucket/span.csv", "push": {"model_repository": "s3://bucket/models"}}
    assert container_view(remote) == (remote, {})
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        container_view({"data_path": str(tmp_path / "nope.csv")})
