"""The batch scoring DAG (offline predictions): one step that checks a table against a pushed
version's SERVING schema and baseline, scores it with that version's SavedModel and publishes the
predictions where the sidecar's lookup finds them (components/batch_score.py).

Settings travel as the `batch` and `drift` sections of params.yaml, compiled in as literal
defaults read when this module is imported, as in pipelines/training_pipeline.py. `version` 0
scores with the version served now (the highest in the model repository).
"""
from kfp import dsl

from components.batch_score import batch_score_component
from flywheel import params as flywheel_params

PIPELINE_NAME = "flywheel-batch"
SECTIONS = ("batch", "drift")
DEFAULT_DATA = "data/spans/span-003.csv"


def arguments(params: flywheel_params.Params, data_path: str = DEFAULT_DATA, version: int = 0, **run_arguments) -> dict:
    """Pipeline arguments: the data, the model (push.model_repository and push.model_name), the
    version, one dict per section and run-level values (data_rev, trigger)."""
    values = {section: flywheel_params.section_dict(getattr(params, section)) for section in SECTIONS}
    return {"data_path": data_path, "model_repository": params.push.model_repository,
            "model_name": params.push.model_name, "version": version, **values, **run_arguments}


DEFAULTS = arguments(flywheel_params.load())


@dsl.pipeline(name=PIPELINE_NAME,
              description="Score a table with a pushed model version in bounded memory, with the SERVING schema's "
                          "checks and drift against the version's baseline; publish the predictions for lookup by key.")
def batch_pipeline(
    data_path: str = DEFAULT_DATA,
    data_rev: str = "",
    model_repository: str = DEFAULTS["model_repository"],
    model_name: str = DEFAULTS["model_name"],
    version: int = 0,
    batch: dict = DEFAULTS["batch"],
    drift: dict = DEFAULTS["drift"],
    trigger: dict = {},
):
    task = batch_score_component(data_path=data_path, data_rev=data_rev, model_repository=model_repository,
                                 model_name=model_name, version=version, batch=batch, drift=drift,
                                 run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, trigger=trigger)
    # The file behind data_path can change while its name stays, and each run publishes: never cached.
    task.set_caching_options(False)
    task.set_display_name("batch-score")
    task.set_cpu_request("1").set_memory_request("2G").set_memory_limit("4G")
