"""The compiled pipeline: committed YAML is current, image override, and (with KFP_HOST) a real submission."""
import os

import pytest
import yaml

from flywheel import names
from pipelines import runner


def _executors(path):
    with open(path) as f:
        spec = next(yaml.safe_load_all(f))
    return spec["deploymentSpec"]["executors"]


def test_committed_yaml_matches_a_fresh_compile(tmp_path):
    fresh = runner.compile_pipeline(str(tmp_path / "pipeline.yaml"))
    with open(fresh) as f, open(runner.PIPELINE_YAML) as g:
        assert f.read() == g.read(), "pipelines/training_pipeline.yaml is stale: run `make compile` and commit it"


def test_dag_wires_the_seven_steps_in_order():
    with open(runner.PIPELINE_YAML) as f:
        spec = next(yaml.safe_load_all(f))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {f"{s}-component" for s in
                          ("ingest", "statistics", "schema", "validate", "train", "evaluate", "push")}
    assert "validate-component" in tasks["train-component"]["dependentTasks"]
    assert set(tasks["push-component"]["dependentTasks"]) >= {"train-component", "evaluate-component"}
    for executor in _executors(runner.PIPELINE_YAML).values():
        assert executor["container"]["image"] == names.COMPONENT_IMAGE
    # Parameters carry literal defaults, nothing read from the compiling machine's environment.
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["model_name"]["defaultValue"] == names.DEFAULT_MODEL_NAME


def test_image_given_at_compile_time_reaches_every_executor(tmp_path):
    path = runner.compile_pipeline(str(tmp_path / "p.yaml"), image="registry.example/flywheel:1.2.3")
    images = {e["container"]["image"] for e in _executors(path).values()}
    assert images == {"registry.example/flywheel:1.2.3"}


KFP_HOST = os.environ.get("KFP_HOST")


@pytest.mark.skipif(not KFP_HOST, reason="KFP_HOST is not set: no Kubeflow Pipelines endpoint to submit to")
def test_submit_and_schedule_against_a_real_endpoint():
    arguments = {"data_path": os.environ.get("FLYWHEEL_CLUSTER_DATA", "data/spans/span-001.csv"),
                 "model_repository": os.environ.get("FLYWHEEL_CLUSTER_MODEL_REPOSITORY", "/models")}
    run_id = runner.submit(KFP_HOST, arguments, experiment="flywheel-tests")
    assert runner.client(KFP_HOST).get_run(run_id).run_id == run_id
    job_id = runner.schedule(KFP_HOST, "0 0 3 * * *", arguments, experiment="flywheel-tests", name="flywheel-test-schedule")
    kfp_client = runner.client(KFP_HOST)
    assert kfp_client.get_recurring_run(job_id).recurring_run_id == job_id
    kfp_client.delete_recurring_run(job_id)


def test_set_pairs_become_typed_pipeline_arguments():
    from pipelines.cli import parse_sets

    assert parse_sets(["train_accelerator_limit=1", "train_accelerator_type=nvidia.com/gpu",
                       'train_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}', "force_push=true"]) == {
        "train_accelerator_limit": 1, "train_accelerator_type": "nvidia.com/gpu",
        "train_node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}, "force_push": True}
    with pytest.raises(ValueError, match="key=value"):
        parse_sets(["no-equals-sign"])
