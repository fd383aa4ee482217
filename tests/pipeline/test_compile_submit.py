"""The compiled pipeline: committed YAML is current, image override, and (with KFP_HOST) a real submission."""
import os

import pytest
import yaml

from flywheel import names, params
from pipelines import remote
from pipelines.training_pipeline import SECTIONS, arguments


def _executors(path):
    with open(path) as f:
        spec = next(yaml.safe_load_all(f))
    return spec["deploymentSpec"]["executors"]


def test_committed_yaml_matches_a_fresh_compile(tmp_path):
    fresh = remote.compile_pipeline(str(tmp_path / "pipeline.yaml"))
    with open(fresh) as f, open(remote.PIPELINE_YAML) as g:
        assert f.read() == g.read(), "pipelines/training_pipeline.yaml is stale: run `make compile` and commit it"


def test_dag_wires_the_steps_in_order():
    with open(remote.PIPELINE_YAML) as f:
        spec = next(yaml.safe_load_all(f))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {f"{s}-component" for s in
                          ("ingest", "resolve", "statistics", "schema", "validate", "train", "evaluate",
                           "infra-validate", "push")}
    assert "validate-component" in tasks["train-component"]["dependentTasks"]
    for consumer in ("validate-component", "evaluate-component", "push-component"):   # production is an input
        assert "resolve-component" in tasks[consumer]["dependentTasks"]
    assert set(tasks["push-component"]["dependentTasks"]) >= {"train-component", "evaluate-component",
                                                               "infra-validate-component"}
    assert set(tasks["infra-validate-component"]["dependentTasks"]) >= {"train-component", "evaluate-component"}
    for executor in _executors(remote.PIPELINE_YAML).values():
        assert executor["container"]["image"] == names.COMPONENT_IMAGE
    # Parameters carry literal defaults, nothing read from the compiling machine's environment.
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["push"]["defaultValue"]["model_name"] == names.DEFAULT_MODEL_NAME


def _numbers_as_compiled(value):
    """KFP stores every number of a dict parameter as a float (protobuf Struct)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list, dict)):
        return value
    if isinstance(value, list):
        return [_numbers_as_compiled(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_as_compiled(v) for k, v in value.items()}
    return float(value)


def test_compiled_defaults_are_params_yaml():
    """One spine: every section of params.yaml the pipeline takes is its compiled default, and
    params.yaml holds the typed params' defaults."""
    with open(remote.PIPELINE_YAML) as f:
        defaults = next(yaml.safe_load_all(f))["root"]["inputDefinitions"]["parameters"]
    expected = arguments(params.load())
    for section in SECTIONS:
        assert defaults[section]["defaultValue"] == _numbers_as_compiled(expected[section]), section
    assert params.load() == params.Params(), "params.yaml and flywheel/params.py disagree"


def test_image_given_at_compile_time_reaches_every_executor(tmp_path):
    path = remote.compile_pipeline(str(tmp_path / "p.yaml"), image="registry.example/flywheel:1.2.3")
    images = {e["container"]["image"] for e in _executors(path).values()}
    assert images == {"registry.example/flywheel:1.2.3"}


def test_volume_given_at_compile_time_is_mounted_in_every_step(tmp_path):
    path = remote.compile_pipeline(str(tmp_path / "p.yaml"), volume="flywheel-data:/mnt/flywheel")
    with open(path) as f:
        spec, platform = yaml.safe_load_all(f)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"])
    for name, config in executors.items():
        assert config["pvcMount"] == [{"constant": "flywheel-data", "mountPath": "/mnt/flywheel",
                                       "pvcNameParameter": {"runtimeValue": {"constant": "flywheel-data"}}}], name
    # The train step keeps its node selector and tolerations beside the mount.
    assert set(executors["exec-train-component"]) == {"nodeSelector", "tolerations", "pvcMount"}


@pytest.mark.parametrize("volume, problem", [("Data:/mnt", "claim name 'Data'"), ("data", "mount path ''"),
                                             ("data:relative", "mount path 'relative'"), (":/mnt", "claim name ''")])
def test_malformed_volume_is_refused_naming_the_part(tmp_path, volume, problem):
    with pytest.raises(ValueError, match=problem):
        remote.compile_pipeline(str(tmp_path / "p.yaml"), volume=volume)
    assert not (tmp_path / "p.yaml").exists()


def test_compile_command_with_and_without_a_volume(tmp_path, capsys):
    from pipelines import cli

    assert cli.main(["compile", "--output", str(tmp_path / "plain.yaml")]) == 0
    # The pipeline spec and its platform spec (the train step's node selector and tolerations).
    assert len([d for d in yaml.safe_load_all((tmp_path / "plain.yaml").read_text()) if d]) == 2
    assert cli.main(["compile", "--output", str(tmp_path / "mounted.yaml"), "--volume", "data:/mnt/data"]) == 0
    assert "volume data:/mnt/data" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        cli.main(["compile", "--output", str(tmp_path / "bad.yaml"), "--volume", "data:mnt"])
    assert refused.value.code == 2 and "mount path 'mnt'" in capsys.readouterr().err
    assert not (tmp_path / "bad.yaml").exists()


KFP_HOST = os.environ.get("KFP_HOST")


@pytest.mark.skipif(not KFP_HOST, reason="KFP_HOST is not set: no Kubeflow Pipelines endpoint to submit to")
def test_submit_and_schedule_against_a_real_endpoint():
    settings = params.override(params.load(), {
        "push.model_repository": os.environ.get("FLYWHEEL_CLUSTER_MODEL_REPOSITORY", "/models")})
    run_arguments = arguments(settings, os.environ.get("FLYWHEEL_CLUSTER_DATA", "data/spans/span-001.csv"))
    run_id = remote.submit(KFP_HOST, run_arguments, experiment="flywheel-tests")
    assert remote.client(KFP_HOST).get_run(run_id).run_id == run_id
    job_id = remote.schedule(KFP_HOST, "0 0 3 * * *", run_arguments, experiment="flywheel-tests",
                             name="flywheel-test-schedule")
    kfp_client = remote.client(KFP_HOST)
    assert kfp_client.get_recurring_run(job_id).recurring_run_id == job_id
    kfp_client.delete_recurring_run(job_id)


def test_set_pairs_become_typed_pipeline_arguments():
    from flywheel.options import parse_sets

    assert parse_sets(["train_accelerator_limit=1", "train_accelerator_type=nvidia.com/gpu",
                       'train_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}', "force_push=true"]) == {
        "train_accelerator_limit": 1, "train_accelerator_type": "nvidia.com/gpu",
        "train_node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}, "force_push": True}
    assert parse_sets(["train.epochs=20", "validate.block_on_drift=true"]) == {
        "train.epochs": 20, "validate.block_on_drift": True}
    with pytest.raises(ValueError, match="key=value"):
        parse_sets(["no-equals-sign"])
    with pytest.raises(ValueError, match="not a params.yaml setting"):
        parse_sets(["epochs=20"])


def test_set_overrides_reach_the_typed_params_and_unknown_keys_are_named():
    settings = params.override(params.load(), {"train.epochs": 20, "ingest.label": "y"})
    assert settings.train.epochs == 20 and settings.ingest.label == "y"
    with pytest.raises(ValueError, match="unknown key.*'epochz'.*section 'train'"):
        params.override(params.load(), {"train.epochz": 20})
    with pytest.raises(ValueError, match="train.epochs must be an integer"):
        params.override(params.load(), {"train.epochs": "many"})
