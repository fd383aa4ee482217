"""Schema: import the curated schema, or infer one from the train statistics.

Either way the result has environments TRAINING and SERVING with the label excluded from
SERVING (a request carries no label), and domains for categorical string features (TFDV infers
those from the top values). An inferred schema is a starting point: review it (domains,
presence, the label's domain), then keep it as the curated schema, as
flywheel/curated/schema.pbtxt was for the default dataset.
"""
from pathlib import Path

from kfp import dsl

from components import column_checks
from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, names, schema_view
from flywheel.errors import DataError

# A value seen fewer times than this in the training split makes a column's values an open set.
MIN_LEVEL_COUNT = 5


def add_environments(schema, label: str, source: str, sensitive: tuple[str, ...] = ()):
    """TRAINING and SERVING environments; the label, and the columns marked sensitive, only in
    TRAINING: training takes its inputs from SERVING, so a sensitive column stays in the data
    (fairness slices it) but never feeds the model. Idempotent."""
    for env in (names.ENV_TRAINING, names.ENV_SERVING):
        if env not in schema.default_environment:
            schema.default_environment.append(env)
    for column in (label, *sensitive):
        feature = next((f for f in schema.feature if f.name == column), None)
        if feature is None:
            what = "the label" if column == label else "a column in schema.sensitive_features"
            raise DataError(source, f"{what} is not a feature of the schema", column=column)
        if names.ENV_SERVING not in feature.not_in_environment:
            feature.not_in_environment.append(names.ENV_SERVING)
    return schema


def drop_vocabulary(schema, feature) -> None:
    """No value domain for a column whose values are new in every span (dates, ids, free text): a
    vocabulary of the values seen would make the next span's values anomalies."""
    if feature.HasField("domain"):
        domain = feature.domain
        feature.ClearField("domain")
        kept = [d for d in schema.string_domain if d.name != domain]
        del schema.string_domain[:]
        schema.string_domain.extend(kept)
    for field in ("string_domain", "int_domain"):
        if feature.HasField(field):
            feature.ClearField(field)


def mark_time(schema, feature, fmt: str) -> None:
    """A time_domain instead of any value domain."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    drop_vocabulary(schema, feature)
    if fmt == schema_view.UNIX_SECONDS:
        feature.time_domain.integer_format = schema_pb2.TimeDomain.UNIX_SECONDS
    else:
        feature.time_domain.string_format = fmt


def open_ended(feature_stats) -> bool:
    """A string column whose values are not a closed set: some value was seen fewer than
    MIN_LEVEL_COUNT times in the training split (or TFDV listed only the commonest), so values
    missing from the training split will appear in others by sampling alone."""
    buckets = feature_stats.string_stats.rank_histogram.buckets
    if not buckets:
        return False
    listed_all = len(buckets) >= feature_stats.string_stats.unique
    return not listed_all or min(b.sample_count for b in buckets) < MIN_LEVEL_COUNT


def infer(train_stats, label: str, source: str = "<statistics>", time_columns: dict[str, str] | None = None):
    """A schema inferred from train statistics: environments; time domains for the time columns the
    statistics step found; near-unique strings (ids, free text) kept out of the model; a value
    domain only for a closed set of values (TFDV infers one for any column with few enough values,
    and on a small table an eval split then holds values the train split never saw)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2
    schema = tfdv.infer_schema(train_stats)
    times = time_columns or {}
    stats_by_name = {f.path.step[0]: f for f in train_stats.datasets[0].features if f.path.step}
    id_like = {f.feature for f in column_checks.findings(train_stats, skip=frozenset({label, *times}))
               if f.pattern == "near_unique"}
    for feature in schema.feature:
        stats = stats_by_name.get(feature.name)
        if feature.name in times and feature.name != label:
            mark_time(schema, feature, times[feature.name])
        elif feature.name in id_like:
            feature.lifecycle_stage = schema_pb2.DEBUG_ONLY   # recorded, not a model input
            drop_vocabulary(schema, feature)
        elif stats is not None and stats.HasField("string_stats") and open_ended(stats):
            drop_vocabulary(schema, feature)
    return add_environments(schema, label, source)


def run(statistics_dir: str | Path, output_dir: str | Path, label: str, curated_schema: str | Path | None = None,
        sensitive: tuple[str, ...] = ()) -> dict:
    """Write `<output_dir>/schema.pbtxt`; return where the schema came from. `sensitive`: columns
    kept out of the model's inputs (add_environments)."""
    curated = schema_view.resolve_curated(curated_schema)
    if curated:
        schema = add_environments(schema_view.load(curated), label, str(curated), sensitive)
        origin = f"curated:{curated}"
    else:
        train_stats = bundle.read_stats(str(artifacts.stats_file(statistics_dir, names.TRAIN)))
        schema = add_environments(infer(train_stats, label, str(statistics_dir), artifacts.time_columns(statistics_dir)),
                                  label, str(statistics_dir), sensitive)
        origin = "inferred"
    with atomic_dir(output_dir) as staging:
        schema_view.write(schema, artifacts.schema_file(staging))
    return {"schema_source": origin, "label": label, "features": [f.name for f in schema.feature]}


@flywheel_component
def schema_component(statistics: dsl.Input[dsl.Artifact], params: dict, schema: dsl.Output[dsl.Artifact]):
    """The curated schema of `params` (params.yaml's `schema` section) if it names one, else one
    inferred from the train split's statistics. The label comes with the statistics."""
    from components.kfp_component import set_metadata
    from components.schema import run
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.SchemaParams, params, "schema")
    curated = settings.curated
    schema.metadata["params"] = flywheel_params.section_dict(settings)
    set_metadata(schema, run(statistics_dir=statistics.path, output_dir=schema.path,
                             label=statistics.metadata["label"], curated_schema=curated,
                             sensitive=tuple(settings.sensitive_features)))
