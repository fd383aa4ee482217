"""Schema: import the curated schema, or infer one from the train statistics.

Either way the result has environments TRAINING and SERVING with the label excluded from
SERVING (a request carries no label), and domains for categorical string features (TFDV infers
those from the top values). An inferred schema is a starting point: review it (domains,
presence, the label's domain), then keep it as the curated schema, as
flywheel/curated/schema.pbtxt was for the default dataset.
"""
from pathlib import Path

from kfp import dsl

from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, names, schema_view
from flywheel.errors import DataError

# Integer features that hold epoch seconds move forward with every span by definition: they get
# a time_domain, and validate compares no distributions for them. Bounds: 2000-01-01..2100-01-01.
EPOCH_RANGE = (946_684_800, 4_102_444_800)


def _looks_like_epoch_seconds(feature_stats) -> bool:
    from tensorflow_metadata.proto.v0 import statistics_pb2
    if feature_stats.type != statistics_pb2.FeatureNameStatistics.INT or not feature_stats.HasField("num_stats"):
        return False
    num = feature_stats.num_stats
    return EPOCH_RANGE[0] <= num.min and num.max <= EPOCH_RANGE[1]


def add_environments(schema, label: str, source: str):
    """TRAINING and SERVING environments; the label only in TRAINING. Idempotent."""
    for env in (names.ENV_TRAINING, names.ENV_SERVING):
        if env not in schema.default_environment:
            schema.default_environment.append(env)
    label_feature = next((f for f in schema.feature if f.name == label), None)
    if label_feature is None:
        raise DataError(source, "the label is not a feature of the schema", column=label)
    if names.ENV_SERVING not in label_feature.not_in_environment:
        label_feature.not_in_environment.append(names.ENV_SERVING)
    return schema


def infer(train_stats, label: str, source: str = "<statistics>"):
    """A schema inferred from train statistics, with environments and time domains added."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2
    schema = tfdv.infer_schema(train_stats)
    by_name = {f.path.step[0]: f for f in train_stats.datasets[0].features if f.path.step}
    for feature in schema.feature:
        stats = by_name.get(feature.name)
        if feature.name != label and stats is not None and _looks_like_epoch_seconds(stats):
            feature.time_domain.integer_format = schema_pb2.TimeDomain.UNIX_SECONDS
    return add_environments(schema, label, source)


def run(statistics_dir: str | Path, output_dir: str | Path, label: str, curated_schema: str | Path | None = None) -> dict:
    """Write `<output_dir>/schema.pbtxt`; return where the schema came from."""
    curated = schema_view.resolve_curated(curated_schema)
    if curated:
        schema = add_environments(schema_view.load(curated), label, str(curated))
        origin = f"curated:{curated}"
    else:
        train_stats = bundle.read_stats(str(artifacts.stats_file(statistics_dir, names.TRAIN)))
        schema = infer(train_stats, label, str(statistics_dir))
        origin = "inferred"
    with atomic_dir(output_dir) as staging:
        schema_view.write(schema, artifacts.schema_file(staging))
    return {"schema_source": origin, "label": label, "features": [f.name for f in schema.feature]}


@flywheel_component
def schema_component(statistics: dsl.Input[dsl.Artifact], params: dict, schema: dsl.Output[dsl.Artifact]):
    """The curated schema of `params` (params.yaml's `schema` section) if it names one, else one
    inferred from the train split's statistics. The label comes with the statistics."""
    from components.schema import run
    from flywheel import params as flywheel_params

    curated = flywheel_params.build(flywheel_params.SchemaParams, params, "schema").curated
    schema.metadata.update(run(statistics_dir=statistics.path, output_dir=schema.path,
                               label=statistics.metadata["label"], curated_schema=curated))
