"""Statistics: TFDV statistics per split, and HTML pages comparing eval with train: a self-contained
one (flywheel/report: inline SVG, opens anywhere) and TFDV's Facets page (needs the internet).

Output layout: flywheel/artifacts.py (`<output_dir>/<split>/stats.pb`, each a binary
DatasetFeatureStatisticsList whose one dataset is named after the split). The path is ingest's
(`scale` params, components/engines.py): in memory, `generate_statistics_from_dataframe` on the
whole split, which avoids starting an Apache Beam pipeline for data that fits; streaming, TFDV's
generators fed record batch by batch (components/streaming_statistics.py); Beam, TFDV's
`GenerateStatistics` PTransform (components/beam_data.py). The protos are the same on every path.

A schema, when there is one (the curated schema), is passed to TFDV so that integer features it
marks categorical (`int_domain.is_categorical`, e.g. pickup_area and the label) get string
statistics (top values, rank histogram), which the drift rule reads as categories.

Each split also gets `profiles.json`: the drift rule's reference profiles (flywheel/drift), exact,
from the split's raw values in memory (read off TFDV's sketches on the other paths), with `quantiles` bins per numeric column (params.yaml
`drift.quantiles`) and the parts of the time columns (flywheel/temporal/time_features.py) in place of their
values, and (in memory) the joint drift reference of the split's features without the label
(flywheel/drift/joint.py: how they move together). Validate and the sidecar read them (a pushed
version carries its training split's). Time
columns are the schema's time features, or those detected in the train split when there is no
schema; `time_columns.json` records which they are. TFDV's numeric histograms use the same
number of quantile buckets.
"""
import json
import os
from pathlib import Path

from kfp import dsl

from components import engines, streaming_statistics
from components.artifact_io import atomic_dir, atomic_file
from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, names, schema_view
from flywheel.params import DriftParams, ScaleParams
from flywheel.temporal import time_features

# Rows of the train split time columns are detected on when the split is not held in memory
# (detection looks at a sample of 1,000 values: flywheel/temporal/timeparts.py).
DETECTION_ROWS = 100_000


def compute(df, name: str, schema=None, quantiles: int = 100):
    """TFDV statistics of one DataFrame, its dataset named `name` (Facets shows the name)."""
    import tensorflow_data_validation as tfdv
    options = tfdv.StatsOptions(schema=schema, num_quantiles_histogram_buckets=quantiles)
    # A filtered frame keeps its index, which TFDV would report as a feature `__index_level_0__`.
    stats = tfdv.generate_statistics_from_dataframe(df.reset_index(drop=True), stats_options=options)
    stats.datasets[0].name = name
    return stats


def profiles(df, times: dict[str, str], schema=None, quantiles: int = 100) -> dict:
    """Exact drift reference profiles of a split: every column but the time columns, whose parts
    stand in for them. Integer features the schema marks categorical are profiled as categories."""
    from flywheel import drift
    columns = {c: df[c].to_numpy() for c in df.columns if c not in times}
    columns.update(time_features.all_parts({c: df[c].to_numpy() for c in times if c in df}, times))
    categorical = {f.name for f in schema_view.features(schema, names.ENV_TRAINING) if f.categorical} \
        if schema is not None else set()
    return drift.profiles_from_values(columns, quantiles, categorical)


def joint_reference(df, profiles: dict, times: dict[str, str], label: str, params: DriftParams):
    """The joint drift reference of a split's features (not the label, not the time columns):
    None when fewer than two features can take part."""
    from flywheel.drift import joint
    features = [c for c in df.columns if c not in times and c != label]
    return joint.joint_profile({c: df[c].to_numpy() for c in features}, profiles, params)


def time_columns(train, label: str, schema=None) -> dict[str, str]:
    """{column: time format}: the schema's time features, else the columns of the train split
    whose values are times."""
    if schema is not None:
        return {f.name: f.time_format for f in schema_view.features(schema, names.ENV_TRAINING) if f.time}
    return time_features.detect({c: train[c].to_numpy() for c in train.columns}, skip=frozenset({label}))


def render_html(lhs, rhs, lhs_name: str = names.TRAIN, rhs_name: str = names.EVAL) -> str:
    """TFDV's Facets page: it loads its scripts from the internet when opened (an extra for users
    who have it; `page` is the self-contained default)."""
    from tensorflow_data_validation.utils.display_util import get_statistics_html
    return get_statistics_html(lhs_statistics=lhs, rhs_statistics=rhs, lhs_name=lhs_name, rhs_name=rhs_name)


def page(train_profiles: dict, eval_current: dict, rows: dict[str, int], times: dict[str, str], source: str = "") -> str:
    """The self-contained page (flywheel/report): every column of the eval split beside the train
    split, in the train split's bins (time columns by their parts), without a decision.
    `eval_current`: the eval split's values (with parts), or their summaries in the train bins."""
    from flywheel.report import build, model, render
    comparison = build.side_by_side(
        names.EVAL, "Eval split beside train split", "train split", "eval split", train_profiles, eval_current,
        note="Distributions only: the validate step decides skew and drift (its report).")
    facts = [("data", source)] if source else []
    facts += [(f"{split} rows", f"{count:,}") for split, count in rows.items()]
    facts += [("time columns", ", ".join(times) or "none")]
    title = f"Statistics: {Path(source).name}" if source else "Statistics"
    return render.render(model.Report(title, tuple(facts), (), (comparison,), build.now(), decides=False))


def run(examples_dir: str | Path, output_dir: str | Path, html_path: str | Path | None = None,
        schema_path: str | Path | None = None, label: str = "", quantiles: int = 100,
        facets_path: str | Path | None = None, source: str = "", scale: ScaleParams = ScaleParams(),
        engine: str | None = None, drift_params: DriftParams = DriftParams()) -> dict:
    """Statistics of every split under `examples_dir`; returns rows per split, the time columns and
    the path taken (`engine`: scale.mode, or what ingest chose when it is auto). `html_path`: the
    self-contained page of the splits; `facets_path`: TFDV's Facets page."""
    engine = engines.follow(scale, engine)
    schema = schema_view.load(schema_path) if schema_path else None
    if engine == engines.IN_MEMORY:
        frames = {split: artifacts.read_split(examples_dir, split) for split in names.SPLITS}
        times = time_columns(frames[names.TRAIN], label, schema)
        computed = {split: compute(df, split, schema, quantiles) for split, df in frames.items()}
        profiled = {split: profiles(df, times, schema, quantiles) for split, df in frames.items()}
        joint_refs = {split: joint_reference(frames[split], profiled[split], times, label, drift_params)
                      for split in names.SPLITS}
        eval_current = lambda: time_features.with_parts(frames[names.EVAL], times)  # noqa: E731
    else:
        sample = streaming_statistics.first_rows(examples_dir, names.TRAIN, DETECTION_ROWS)
        times = time_columns(sample, label, schema)
        if engine == engines.BEAM:
            from components import beam_data
            found = beam_data.statistics(str(examples_dir), times, schema, quantiles, scale)
        else:
            found = {split: streaming_statistics.split_statistics(examples_dir, split, times, schema, quantiles,
                                                                  scale.batch_rows, scale.workers)
                     for split in names.SPLITS}
        computed = {split: stats for split, (stats, _) in found.items()}
        joint_refs = {}   # needs the rows together: in memory only
        profiled = {split: profiles for split, (_, profiles) in found.items()}
        eval_current = lambda: streaming_statistics.summarize_batches(  # noqa: E731
            profiled[names.TRAIN], artifacts.split_batches(examples_dir, names.EVAL, scale.batch_rows), times)
    rows = {split: int(stats.datasets[0].num_examples) for split, stats in computed.items()}
    with atomic_dir(output_dir) as staging:
        (staging / names.TIME_COLUMNS_FILE).write_text(json.dumps(times, indent=2) + "\n")
        for split in names.SPLITS:
            os.makedirs(staging / split)
            artifacts.stats_file(staging, split).write_bytes(computed[split].SerializeToString())
            bundle.write_profiles(str(artifacts.profiles_file(staging, split)), profiled[split],
                                  joint_refs.get(split))
    if html_path:
        with atomic_file(html_path) as tmp:
            tmp.write_text(page(profiled[names.TRAIN], eval_current(), rows, times, source))
    if facets_path:
        with atomic_file(facets_path) as tmp:
            tmp.write_text(render_html(computed[names.TRAIN], computed[names.EVAL]))
    return {**{f"rows_{split}": n for split, n in rows.items()}, "time_columns": times, "engine": engine,
            "profiles": "exact" if engine == engines.IN_MEMORY else "tfdv_quantiles"}


@flywheel_component
def statistics_component(examples: dsl.Input[dsl.Dataset], params: dict, drift: dict, scale: dict,
                         statistics: dsl.Output[dsl.Artifact], statistics_html: dsl.Output[dsl.HTML],
                         facets_html: dsl.Output[dsl.HTML]):
    """TFDV statistics per split; `statistics_html`: a self-contained page of the eval split beside
    the train split; `facets_html`: TFDV's Facets page of the same (it loads scripts from the
    internet when viewed). `params` is params.yaml's `schema` section (its curated schema, when
    there is one, tells TFDV which integer features are categorical and which are time), `drift`
    its `drift` section (the quantiles histogram), `scale` its `scale` section (in memory,
    streaming or Beam; auto follows ingest's choice)."""
    from components.kfp_component import set_metadata
    from components.statistics import run
    from flywheel import params as flywheel_params
    from flywheel import schema_view

    curated = flywheel_params.build(flywheel_params.SchemaParams, params, "schema").curated
    rule = flywheel_params.build(flywheel_params.DriftParams, drift, "drift")
    quantiles = rule.quantiles
    found = run(examples_dir=examples.path, output_dir=statistics.path, html_path=statistics_html.path,
                schema_path=schema_view.resolve_curated(curated), label=examples.metadata.get("label", ""),
                quantiles=quantiles, facets_path=facets_html.path, source=examples.metadata.get("source", ""),
                scale=flywheel_params.build(flywheel_params.ScaleParams, scale, "scale"),
                engine=examples.metadata.get("engine"), drift_params=rule)
    # Carry the data's identity along, so validate can name the file in its errors.
    carried = {k: examples.metadata[k] for k in ("data_path", "source", "data_version", "label") if k in examples.metadata}
    set_metadata(statistics, {**carried, **found})
