"""The training DAG: ingest → statistics → schema → validate → train → evaluate → push.

Every parameter has a literal default (STYLE.md #6), so the compiled YAML does not depend on
who compiled it. Paths are resolved by each step at run time: relative paths against the
task's working directory locally, object-store URLs or mounted volumes on a cluster.
"""
from kfp import dsl, kubernetes

from components.evaluate import evaluate_component
from components.ingest import ingest_component
from components.push import push_component
from components.schema import schema_component
from components.statistics import statistics_component
from components.train import train_component
from components.validate import validate_component

PIPELINE_NAME = "flywheel-training"


@dsl.pipeline(name=PIPELINE_NAME,
              description="Validate a data span with TFDV, train a Keras model, evaluate it against "
                          "production and push it to the TF Serving model repository if blessed.")
def training_pipeline(
    data_path: str = "data/spans/span-001.csv",
    data_rev: str = "",
    label: str = "big_tipper",
    pii_columns: list = ["rider_email"],
    curated_schema: str = "pipelines/schema/schema.pbtxt",
    model_repository: str = "model_repository",
    model_name: str = "taxi_tips",
    drift_linf: float = 0.1,
    drift_jsd: float = 0.1,
    skew_linf: float = 0.1,
    skew_jsd: float = 0.1,
    block_on_drift: bool = False,
    epochs: int = 8,
    batch_size: int = 256,
    learning_rate: float = 0.003,
    hidden_units: list = [32, 16],
    slice_feature: str = "payment_type",
    min_auc: float = 0.6,
    min_accuracy: float = 0.0,
    max_rmse: float = 0.0,
    allowed_regression: float = 0.01,
    force_push: bool = False,
    train_accelerator_type: str = "",
    train_accelerator_limit: int = 0,
    train_node_selector: dict = {},
    train_tolerations: list = [],
):
    ingest = ingest_component(data_path=data_path, data_rev=data_rev, label=label, pii_columns=pii_columns)
    # The file behind data_path can change while its name stays: only a DVC revision pins it.
    ingest.set_caching_options(False)
    ingest.set_display_name("ingest")

    stats = statistics_component(examples=ingest.outputs["examples"], curated_schema=curated_schema)
    stats.set_display_name("statistics")
    schema = schema_component(statistics=stats.outputs["statistics"], curated_schema=curated_schema,
                              label=label).set_display_name("schema")
    validate = validate_component(
        statistics=stats.outputs["statistics"], schema=schema.outputs["schema"],
        model_repository=model_repository, model_name=model_name,
        drift_linf=drift_linf, drift_jsd=drift_jsd, skew_linf=skew_linf, skew_jsd=skew_jsd,
        block_on_drift=block_on_drift)
    validate.set_caching_options(False)  # drift is measured against whatever is in production now
    validate.set_display_name("validate")

    train = train_component(
        examples=ingest.outputs["examples"], schema=schema.outputs["schema"], label=label, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, hidden_units=hidden_units)
    train.after(validate)  # blocking anomalies stop the run before training
    train.set_display_name("train")
    train.set_cpu_request("1").set_memory_request("2G").set_memory_limit("8G")
    train.set_accelerator_type(train_accelerator_type).set_accelerator_limit(train_accelerator_limit)
    kubernetes.add_node_selector_json(train, train_node_selector)
    kubernetes.add_toleration_json(train, train_tolerations)

    evaluate = evaluate_component(
        examples=ingest.outputs["examples"], model=train.outputs["model"], slice_feature=slice_feature,
        min_auc=min_auc, min_accuracy=min_accuracy, max_rmse=max_rmse, allowed_regression=allowed_regression,
        model_repository=model_repository, model_name=model_name)
    evaluate.set_caching_options(False)  # compares with whatever is in production now
    evaluate.set_display_name("evaluate")

    push = push_component(
        model=train.outputs["model"], evaluation=evaluate.outputs["evaluation"],
        statistics=stats.outputs["statistics"], schema=schema.outputs["schema"],
        examples=ingest.outputs["examples"], model_repository=model_repository, model_name=model_name,
        force=force_push)
    push.set_caching_options(False)
    push.set_display_name("push")
