"""Push: a blessed model becomes a new integer version in the model repository, atomically, and
takes a version label: `canary` by default (production keeps serving until the sidecar promotes
it), `production` when params say so or when it is the model's first version.

Follows TFX's Pusher: check the blessing (evaluate's and infra validation's); refuse when production moved since the run resolved it
(the comparison would be stale); skip when the same data already produced a version (unless
forced); stage the whole version under a name TF Serving ignores (names.STAGING_PREFIX), then
rename it to its integer version, the one step the server sees; always record pushed or not
pushed, with the reason. Works on local paths and gs:// / s3:// through flywheel.storage.
"""

import dataclasses
import json
import os
import tempfile
import time
import uuid

from kfp import dsl

from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, names, provenance, schema_changes, schema_view, storage
from flywheel import model_repository as repo


@dataclasses.dataclass(frozen=True)
class PushResult:
    pushed: bool
    reason: str
    version: int | None = None
    path: str = ""
    compared_with: int | None = None      # the production version the candidate was evaluated against
    label: str = ""                       # the version label it was published under (production, canary)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def remove_stale_staging(repository: str, model_name: str) -> list[str]:
    """Staging directories left by a push that was killed mid-copy. A single writer pushes at a
    time (one pipeline per model), so any staging directory found before a push is stale."""
    model_dir = repo.model_dir(repository, model_name)
    stale = [n for n in storage.listdir(model_dir) if n.startswith(names.STAGING_PREFIX)]
    for name in stale:
        storage.remove(storage.join(model_dir, name))
    return stale


def publish(source_dir: str, repository: str, model_name: str, metadata_updates: dict,
            extra_files: dict[str, str]) -> tuple[int, str]:
    """Copy a SavedModel plus bundle files into the next integer version; returns (version, path).

    `extra_files` maps a file name under assets.extra/ to a local source path."""
    remove_stale_staging(repository, model_name)
    version = (repo.latest_version(repository, model_name) or 0) + 1
    storage.makedirs(repo.model_dir(repository, model_name))
    staging = storage.join(repo.model_dir(repository, model_name),
                           f"{names.STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    final = repo.version_dir(repository, model_name, version)
    try:
        storage.copy_tree(source_dir, staging)
        bundle.add_files(staging, extra_files)
        metadata = bundle.read_metadata(source_dir)
        metadata.update(metadata_updates, pushed_at=time.time(), version=version)
        bundle.write_metadata(staging, metadata)
        if storage.exists(final):
            raise FileExistsError(f"{final} appeared while pushing: another push is running for {model_name}")
        storage.rename(staging, final)  # the only step TF Serving can observe
    except BaseException:
        storage.remove(staging)
        raise
    return version, final


def version_trained_on(repository: str, model_name: str, data_version: str) -> int | None:
    """The newest version whose training data had this version, if any."""
    for version in reversed(repo.versions(repository, model_name)):
        version_dir = repo.version_dir(repository, model_name, version)
        if storage.exists(bundle.path(version_dir, names.MODEL_METADATA)) and \
                bundle.read_metadata(version_dir).get("data_version") == data_version:
            return version
    return None


def run(model_dir: str, evaluation_dir: str, statistics_dir: str, schema_path: str, repository: str,
        model_name: str, production_dir: str | None = None, data_version: str = "", force: bool = False,
        run_id: str = "", record: dict | None = None, anomalies_dir: str | None = None,
        infra_validation_dir: str | None = None, release_as: str = names.CANARY) -> PushResult:
    """Decide, publish if blessed (by evaluate and, when given, by infra validation), label the
    new version (`release_as`: canary or production; the first version is production), and write
    the run's record (`record`: what the earlier steps recorded, by "step/output") to the
    repository's runs/ and, when pushed, into the version. The data card comes from validate's
    output (`anomalies_dir`)."""
    if release_as not in (names.CANARY, names.PRODUCTION):
        raise ValueError(f"push.release_as must be {names.CANARY!r} or {names.PRODUCTION!r}, not {release_as!r}")
    result = _decide_and_publish(model_dir, evaluation_dir, statistics_dir, schema_path, repository, model_name,
                                 production_dir, data_version, force, run_id, record or {}, anomalies_dir,
                                 infra_validation_dir, release_as)
    if run_id:
        storage.write_text(repo.run_record_path(repository, model_name, run_id),
                           json.dumps(_complete(record or {}, run_id, result), indent=2, default=str))
    return result


def _complete(record: dict, run_id: str, result: PushResult) -> dict:
    """The run's lineage record: what every step recorded (data, settings, the production version
    compared with), the trigger, the code, and the push decision."""
    steps = {k: v for k, v in record.items() if k != "trigger"}
    return {"run_id": run_id, "trigger": record.get("trigger") or {"kind": "manual"},
            "code": provenance.code_version(), "steps": {**steps, "push/pushed": dataclasses.asdict(result)}}


def _decide_and_publish(model_dir: str, evaluation_dir: str, statistics_dir: str, schema_path: str, repository: str,
                        model_name: str, production_dir: str | None, data_version: str, force: bool, run_id: str,
                        record: dict, anomalies_dir: str | None, infra_validation_dir: str | None,
                        release_as: str) -> PushResult:
    with open(os.path.join(evaluation_dir, names.BLESSING_FILE)) as f:
        blessing = json.load(f)
    compared_with = artifacts.read_production(production_dir)["version"] if production_dir else None
    if not blessing["blessed"]:
        return PushResult(False, f"not blessed: {blessing['reason']}", compared_with=compared_with)
    if infra_validation_dir:
        with open(os.path.join(infra_validation_dir, names.INFRA_BLESSING_FILE)) as f:
            infra = json.load(f)
        if not infra["blessed"]:
            return PushResult(False, f"not blessed by infra validation: {infra['reason']}", compared_with=compared_with)
    current = repo.production_version(repository, model_name)
    if production_dir and current != compared_with:
        was = f"v{compared_with}" if compared_with is not None else "none"
        return PushResult(False, f"production moved from {was} to v{current} while this run was evaluated against "
                                 f"{was}; not pushed (run again to compare with v{current})", compared_with=compared_with)
    if data_version and not force:
        trained_on_same = version_trained_on(repository, model_name, data_version)
        if trained_on_same is not None:
            return PushResult(False, f"version {trained_on_same} was trained on the same data ({data_version}); "
                                     "not pushed (force to push anyway)", trained_on_same,
                              repo.version_dir(repository, model_name, trained_on_same), compared_with)
    with open(os.path.join(evaluation_dir, names.EVALUATION_FILE)) as f:
        evaluation = json.load(f)
    files = {names.BASELINE_STATS: str(artifacts.stats_file(statistics_dir, names.TRAIN)),
             names.BASELINE_SCHEMA: schema_path,
             names.EVAL_PREDICTIONS: os.path.join(evaluation_dir, names.EVAL_PREDICTIONS),
             names.MODEL_CARD: os.path.join(evaluation_dir, names.MODEL_CARD)}
    chart = os.path.join(evaluation_dir, names.FAIRNESS_CHART)   # the model card shows it beside itself
    if os.path.exists(chart):
        files[names.FAIRNESS_CHART] = chart
    if os.path.exists(os.path.join(evaluation_dir, names.CALIBRATION)):
        files[names.CALIBRATION] = os.path.join(evaluation_dir, names.CALIBRATION)
    if infra_validation_dir:  # its card is evaluate's with the infra validation section added
        files[names.MODEL_CARD] = os.path.join(infra_validation_dir, names.MODEL_CARD)
        files[names.INFRA_VALIDATION] = os.path.join(infra_validation_dir, names.INFRA_VALIDATION)
    # The first version of a model has nothing to be a canary against: it is production.
    label = release_as if current is not None else names.PRODUCTION
    card = os.path.join(anomalies_dir, names.DATA_CARD) if anomalies_dir else ""
    if card and os.path.exists(card):
        files[names.DATA_CARD] = card
    profiles = artifacts.profiles_file(statistics_dir, names.TRAIN)
    if profiles.exists():
        files[names.BASELINE_PROFILES] = str(profiles)
    repo.adopt_labels(repository, model_name)
    with tempfile.TemporaryDirectory() as scratch:
        if run_id:  # the version carries the record of the run that made it
            expected = PushResult(True, blessing["reason"], (repo.latest_version(repository, model_name) or 0) + 1,
                                  compared_with=compared_with, label=label)
            files[names.RUN_RECORD] = os.path.join(scratch, names.RUN_RECORD)
            with open(files[names.RUN_RECORD], "w") as f:
                json.dump(_complete(record, run_id, expected), f, indent=2, default=str)
        version, path = publish(model_dir, repository, model_name,
                                {"data_version": data_version, "metrics": evaluation["metrics"], "blessing": blessing,
                                 "compared_with": compared_with, "run_id": run_id,
                                 "schema_version": schema_changes.version(schema_view.load(schema_path))}, files)
    repo.set_label(repository, model_name, label, version, reason=f"pushed by run {run_id or '-'}: {blessing['reason']}")
    return PushResult(True, blessing["reason"], version, path, compared_with, label)


def rollback(repository: str, model_name: str, to_version: int) -> PushResult:
    """Serve an earlier version again: the `production` label moves to it (nothing is copied or
    deleted; TF Serving follows the label). A canary or shadow on that version is cleared."""
    available = repo.versions(repository, model_name)
    if to_version not in available:
        raise ValueError(f"model {model_name} has no version {to_version} in {repository} (versions: {available})")
    was = repo.production_version(repository, model_name)
    repo.set_label(repository, model_name, names.PRODUCTION, to_version, reason=f"rollback from v{was}")
    return PushResult(True, f"rolled back: production is version {to_version} (was {was})", to_version,
                      repo.version_dir(repository, model_name, to_version), label=names.PRODUCTION)


@flywheel_component
def push_component(model: dsl.Input[dsl.Model], evaluation: dsl.Input[dsl.Artifact],
                   statistics: dsl.Input[dsl.Artifact], schema: dsl.Input[dsl.Artifact],
                   examples: dsl.Input[dsl.Dataset], anomalies: dsl.Input[dsl.Artifact],
                   production: dsl.Input[dsl.Artifact], infra_validation: dsl.Input[dsl.Artifact], push: dict,
                   force: bool, run_id: str, trigger: dict, pushed: dsl.Output[dsl.Artifact]):
    """Publish the model as the next version of params.yaml's `push` model if blessed; record the
    run (what each step recorded, with the artifacts' URIs) in the model repository."""
    import os

    from components.kfp_component import set_metadata
    from components.push import run
    from flywheel import artifacts, names
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.PushParams, push, "push")
    inputs = {"ingest/examples": examples, "statistics/statistics": statistics, "schema/schema": schema,
              "validate/anomalies": anomalies, "resolve/production": production, "train/model": model,
              "evaluate/evaluation": evaluation, "infra_validate/validation": infra_validation}
    record = {key: {**artifact.metadata, "uri": artifact.uri} for key, artifact in inputs.items()}
    record["trigger"] = trigger
    result = run(model.path, evaluation.path, statistics.path, str(artifacts.schema_file(schema.path)),
                 settings.model_repository, settings.model_name, production_dir=production.path,
                 data_version=examples.metadata.get("data_version", ""), force=force, run_id=run_id, record=record,
                 anomalies_dir=anomalies.path, infra_validation_dir=infra_validation.path,
                 release_as=settings.release_as)
    print(f"[push] {f'pushed version {result.version} as {result.label}' if result.pushed else 'not pushed'}: "
          f"{result.reason}",
          flush=True)
    os.makedirs(pushed.path, exist_ok=True)
    with open(os.path.join(pushed.path, names.PUSH_RESULT_FILE), "w") as f:
        f.write(result.to_json())
    set_metadata(pushed, {"pushed": result.pushed, "version": result.version, "reason": result.reason,
                          "label": result.label,
                          "compared_with": result.compared_with, "run_id": run_id})
