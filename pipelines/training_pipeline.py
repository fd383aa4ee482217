"""The training DAG: ingest → statistics → schema → validate → train → evaluate → infra validate →
push, with the
production model resolved once as an input of validate, evaluate and push.

Settings travel as one dict parameter per params.yaml section (`ingest`, `schema`, `validate`,
`drift`, `scale`, `train`, `evaluate`, `infra_validate`, `push`); each step turns its section into the typed dataclass of
flywheel/params.py. Their defaults are params.yaml's values, read when this module is imported,
so the compiled YAML carries literal defaults that do not depend on who compiled it or where
(a test checks the committed YAML against params.yaml).
"""

from kfp import dsl, kubernetes

from components.evaluate import evaluate_component
from components.infra_validate import infra_validate_component
from components.ingest import ingest_component
from components.push import push_component
from components.resolve import resolve_component
from components.schema import schema_component
from components.statistics import statistics_component
from components.train import train_component
from components.validate import validate_component
from flywheel import params as flywheel_params

PIPELINE_NAME = "flywheel-training"
SECTIONS = ("ingest", "schema", "validate", "drift", "scale", "train", "evaluate", "infra_validate", "push")
DEFAULT_DATA = "data/spans/span-001.csv"


def arguments(params: flywheel_params.Params, data_path: str = DEFAULT_DATA, **run_arguments) -> dict:
    """Pipeline arguments for a run with these settings: one dict per section, plus run-level
    values (data_path, data_rev, force_push, trigger: what started the run, accelerator settings)."""
    values = {section: flywheel_params.section_dict(getattr(params, section)) for section in SECTIONS}
    return {"data_path": data_path, **values, **run_arguments}


DEFAULTS = arguments(flywheel_params.load())


@dsl.pipeline(name=PIPELINE_NAME,
              description="Validate a data span with TFDV, train a Keras model, evaluate it against "
                          "production, validate it in a model server and push it to the TF Serving "
                          "model repository (as canary) if blessed.")
def training_pipeline(
    data_path: str = DEFAULT_DATA,
    data_rev: str = "",
    ingest: dict = DEFAULTS["ingest"],
    schema: dict = DEFAULTS["schema"],
    validate: dict = DEFAULTS["validate"],
    drift: dict = DEFAULTS["drift"],
    scale: dict = DEFAULTS["scale"],
    train: dict = DEFAULTS["train"],
    evaluate: dict = DEFAULTS["evaluate"],
    infra_validate: dict = DEFAULTS["infra_validate"],
    push: dict = DEFAULTS["push"],
    force_push: bool = False,
    trigger: dict = {},
    train_accelerator_type: str = "",
    train_accelerator_limit: int = 0,
    train_node_selector: dict = {},
    train_tolerations: list = [],
):
    ingest_task = ingest_component(data_path=data_path, data_rev=data_rev, params=ingest, scale=scale)
    # The file behind data_path can change while its name stays: only a DVC revision pins it.
    ingest_task.set_caching_options(False)
    ingest_task.set_display_name("ingest")

    # Reads the model repository as it is now: never cached. Everything downstream gets the
    # production version as an input, so their caches are keyed on it.
    resolve_task = resolve_component(push=push)
    resolve_task.set_caching_options(False)
    resolve_task.set_display_name("resolve")

    stats_task = statistics_component(examples=ingest_task.outputs["examples"], params=schema, drift=drift,
                                      scale=scale)
    stats_task.set_display_name("statistics")
    schema_task = schema_component(statistics=stats_task.outputs["statistics"], params=schema)
    schema_task.set_display_name("schema")
    validate_task = validate_component(
        statistics=stats_task.outputs["statistics"], schema=schema_task.outputs["schema"],
        examples=ingest_task.outputs["examples"], production=resolve_task.outputs["production"],
        params=validate, drift=drift, scale=scale)
    validate_task.set_display_name("validate")

    train_task = train_component(examples=ingest_task.outputs["examples"], schema=schema_task.outputs["schema"],
                                 params=train)
    train_task.after(validate_task)  # blocking anomalies stop the run before training
    train_task.set_display_name("train")
    train_task.set_cpu_request("1").set_memory_request("2G").set_memory_limit("8G")
    train_task.set_accelerator_type(train_accelerator_type).set_accelerator_limit(train_accelerator_limit)
    kubernetes.add_node_selector_json(train_task, train_node_selector)
    kubernetes.add_toleration_json(train_task, train_tolerations)

    evaluate_task = evaluate_component(
        examples=ingest_task.outputs["examples"], model=train_task.outputs["model"],
        production=resolve_task.outputs["production"], params=evaluate, push=push)
    evaluate_task.set_display_name("evaluate")

    # The candidate in a model server of its own: it must load, answer as evaluated, be fast enough.
    infra_task = infra_validate_component(
        examples=ingest_task.outputs["examples"], model=train_task.outputs["model"],
        evaluation=evaluate_task.outputs["evaluation"], params=infra_validate, push=push)
    infra_task.set_display_name("infra_validate")
    infra_task.set_cpu_request("1").set_memory_request("2G").set_memory_limit("4G")

    push_task = push_component(
        model=train_task.outputs["model"], evaluation=evaluate_task.outputs["evaluation"],
        statistics=stats_task.outputs["statistics"], schema=schema_task.outputs["schema"],
        examples=ingest_task.outputs["examples"], anomalies=validate_task.outputs["anomalies"],
        production=resolve_task.outputs["production"], infra_validation=infra_task.outputs["validation"],
        push=push, force=force_push,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, trigger=trigger)
    push_task.set_caching_options(False)  # it changes the model repository
    push_task.set_display_name("push")
