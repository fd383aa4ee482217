"""Statistics: TFDV statistics per split, and a Facets HTML page comparing train with eval.

Output layout: flywheel/artifacts.py (`<output_dir>/<split>/stats.pb`, each a binary
DatasetFeatureStatisticsList whose one dataset is named after the split). Statistics are computed
in memory from the Parquet split (`generate_statistics_from_dataframe`), which avoids starting an
Apache Beam pipeline for data that fits in memory; the result is the same proto the Beam path writes.

A schema, when there is one (the curated schema), is passed to TFDV so that integer features it
marks categorical (`int_domain.is_categorical`, e.g. pickup_area and the label) get string
statistics (top values, rank histogram): the L-infinity comparator needs those, and without
them TFDV silently reports a distance of 0 for such a feature.
"""
import os
from pathlib import Path

from kfp import dsl

from components.artifact_io import atomic_dir, atomic_file
from components.kfp_component import flywheel_component
from flywheel import artifacts, names, schema_view


def compute(df, name: str, schema=None):
    """TFDV statistics of one DataFrame, its dataset named `name` (Facets shows the name)."""
    import tensorflow_data_validation as tfdv
    options = tfdv.StatsOptions(schema=schema) if schema is not None else tfdv.StatsOptions()
    # A filtered frame keeps its index, which TFDV would report as a feature `__index_level_0__`.
    stats = tfdv.generate_statistics_from_dataframe(df.reset_index(drop=True), stats_options=options)
    stats.datasets[0].name = name
    return stats


def render_html(lhs, rhs, lhs_name: str = names.TRAIN, rhs_name: str = names.EVAL) -> str:
    from tensorflow_data_validation.utils.display_util import get_statistics_html
    return get_statistics_html(lhs_statistics=lhs, rhs_statistics=rhs, lhs_name=lhs_name, rhs_name=rhs_name)


def run(examples_dir: str | Path, output_dir: str | Path, html_path: str | Path | None = None,
        schema_path: str | Path | None = None) -> dict:
    """Statistics of every split under `examples_dir`; returns rows per split."""
    import pandas as pd
    schema = schema_view.load(schema_path) if schema_path else None
    computed, rows = {}, {}
    with atomic_dir(output_dir) as staging:
        for split in names.SPLITS:
            df = pd.read_parquet(artifacts.split_file(examples_dir, split))
            computed[split] = compute(df, split, schema)
            rows[f"rows_{split}"] = int(len(df))
            os.makedirs(staging / split)
            artifacts.stats_file(staging, split).write_bytes(computed[split].SerializeToString())
    if html_path:
        with atomic_file(html_path) as tmp:
            tmp.write_text(render_html(computed[names.TRAIN], computed[names.EVAL]))
    return rows


@flywheel_component
def statistics_component(examples: dsl.Input[dsl.Dataset], params: dict, statistics: dsl.Output[dsl.Artifact],
                         statistics_html: dsl.Output[dsl.HTML]):
    """TFDV statistics per split; Facets HTML of train against eval. `params` is params.yaml's
    `schema` section: its curated schema, when there is one, tells TFDV which integer features
    are categorical."""
    from components.statistics import run
    from flywheel import params as flywheel_params
    from flywheel import schema_view

    curated = flywheel_params.build(flywheel_params.SchemaParams, params, "schema").curated
    rows = run(examples_dir=examples.path, output_dir=statistics.path, html_path=statistics_html.path,
               schema_path=schema_view.resolve_curated(curated))
    # Carry the data's identity along, so validate can name the file in its errors.
    carried = {k: examples.metadata[k] for k in ("data_path", "source", "data_version", "label") if k in examples.metadata}
    statistics.metadata.update({**carried, **rows})
