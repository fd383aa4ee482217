"""Resolve: which model version is in production, as an input the rest of the run consumes.

As TFX's resolver hands the Evaluator its baseline model, this step looks the production version
up once and writes it as an artifact: `production.json` (version or none, its URI) beside a copy
of that version's bundle files (baseline statistics, schema, evaluation scores, metadata; not the
SavedModel, which evaluate loads from the URI). Validate measures drift against this bundle,
evaluate compares with this version, push refuses to publish when production has moved since,
and every run records which version it was compared against. The step itself never caches: it
reads the repository as it is now.
"""

import json
from pathlib import Path

from kfp import dsl

from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import bundle, model_repository, names


def run(repository: str, model_name: str, output_dir: str | Path) -> dict:
    """Write the production artifact; return {"version", "uri", "repository", "model_name"}."""
    version = model_repository.production_version(repository, model_name)
    uri = model_repository.version_dir(repository, model_name, version) if version is not None else ""
    found = {"version": version, "uri": uri, "repository": repository, "model_name": model_name}
    with atomic_dir(output_dir) as staging:
        if version is not None:
            found["bundle_files"] = bundle.copy_extras(uri, str(staging))
        (staging / names.PRODUCTION_FILE).write_text(json.dumps(found, indent=2) + "\n")
    return found


@flywheel_component
def resolve_component(push: dict, production: dsl.Output[dsl.Artifact]):
    """The production version of the model named in `push` (params.yaml's `push` section), or none."""
    from components.kfp_component import set_metadata
    from components.resolve import run
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.PushParams, push, "push")
    found = run(settings.model_repository, settings.model_name, production.path)
    set_metadata(production, {"version": found["version"], "uri": found["uri"]})
