"""Validate: schema anomalies (TFDV), drift against production, train/eval skew, suspicious columns.

Drift and skew are decided by one rule (flywheel/drift), the same the sidecar applies online: a
change is declared when it is real (KS for numeric features, chi-squared for categorical ones,
Holm-corrected for the number of features at `drift.alpha`, or `drift.skew_alpha` for skew) and
material (an effect size in readable units at or above its threshold: Wasserstein distance in
reference standard deviations, the largest change of a value's share, PSI). The reference is a
profile of TFDV statistics (the production model's training split for drift, this run's training
split for skew); the current sample is the raw values of this run's train (drift) or eval (skew)
split. Time columns are compared on their cyclical parts (flywheel/temporal/time_features.py). TFDV's own
L-infinity and Jensen-Shannon numbers are computed too and kept in measurements.json for readers
who know them; they decide nothing.

What blocks (raises DataError, so the KFP task fails and nothing downstream runs):
- every schema anomaly on any split: a changed type, a column added or removed, values outside
  a domain (beyond the schema's min_domain_mass), too few values present, ... The schema is
  where tolerance is curated; once it says no, training on the data would be wrong.
- train/eval skew: train and eval come from one span through a hash split, so a real and
  material difference between them is a defect in the data or the pipeline, never news.
What is reported and does not block: drift against production (it is why the flywheel retrains;
the evaluator keeps a worse model out; `validate.block_on_drift` makes it block), and columns
that look wrong for what they hold (components/column_checks.py).

Joint drift and joint skew (flywheel/drift/joint.py: the same two samples compared by how their
features move together, pair by pair) are reported beside them when the reference carries a joint
reference (the statistics step writes one on the in-memory path). Joint drift blocks with
`validate.block_on_drift`; joint skew never blocks: its false-block rate on train/eval re-splits
is not measured.

Outputs: `anomalies.pbtxt` (TFDV Anomalies of train), `anomalies_eval.pbtxt`, `anomalies_test.pbtxt`,
`report.json` (the anomalies: split, feature, kind, anomaly, description, value, threshold,
blocking, and for drift and skew the test, p-values, effect and n), `measurements.json` (every
feature's drift and skew decision, also those that did not change, and TFDV's distances) and
`report.html` (components/validation_report.py: all of it as one self-contained page with charts).
They are written before the error is raised, so a person can read them.
"""
import json
from pathlib import Path
from typing import Iterable

import numpy as np
from kfp import dsl

from components import column_checks, streaming_statistics, validation_report
from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, drift, names, schema_view
from flywheel.drift import joint
from flywheel.errors import DataError
from flywheel.params import DriftParams, ScaleParams, ValidateParams
from flywheel.report import data_card
from flywheel.temporal import time_features

SCHEMA = "schema"
DRIFT, SKEW = names.DRIFT, names.SKEW
SUSPICIOUS = "suspicious"
MEASURES = {"L_INFTY": "linf", "JENSEN_SHANNON_DIVERGENCE": "jsd"}
WHAT_MOVED = {DRIFT: "the train split differs from the production model's training split",
              SKEW: "the eval split differs from the train split"}


def with_tfdv_comparators(schema, train_stats):
    """A copy of the schema with TFDV's drift and skew comparators on every non-time feature, at
    thresholds no distance exceeds (both are at most 1): TFDV measures, the rule decides."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    stats_by_name = {f.path.step[0]: f for f in train_stats.datasets[0].features if f.path.step}
    for feature in out.feature:
        stats = stats_by_name.get(feature.name)
        if stats is None or feature.HasField("time_domain"):
            continue
        if stats.HasField("string_stats"):
            feature.drift_comparator.infinity_norm.threshold = 1.0
            feature.skew_comparator.infinity_norm.threshold = 1.0
        elif stats.HasField("num_stats"):
            feature.drift_comparator.jensen_shannon_divergence.threshold = 1.0
            feature.skew_comparator.jensen_shannon_divergence.threshold = 1.0
    return out


def _type_name(reason_type: int) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    return anomalies_pb2.AnomalyInfo.Type.Name(reason_type)


def schema_anomalies(anomalies, split: str) -> list[dict]:
    """Schema reasons (not comparator ones: the rule decides drift and skew)."""
    found = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason:
            kind = _type_name(reason.type)
            if kind.startswith("COMPARATOR_"):
                continue
            found.append({"split": split, "feature": feature, "kind": SCHEMA, "anomaly": kind,
                          "description": reason.description or reason.short_description,
                          "value": reason.short_description, "threshold": None, "blocking": True})
    for reason in anomalies.dataset_anomaly_info.reason:
        found.append({"split": split, "feature": "__dataset__", "kind": SCHEMA, "anomaly": _type_name(reason.type),
                      "description": reason.description, "value": reason.short_description, "threshold": None,
                      "blocking": True})
    return found


def tfdv_measurements(anomalies) -> list[dict]:
    """TFDV's drift and skew distances (L-infinity, approximate JSD), for the record."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    out = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for kind, group in ((DRIFT, info.drift_measurements), (SKEW, info.skew_measurements)):
            for m in group:
                measure = MEASURES.get(anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type), "other")
                out.append({"feature": feature, "kind": kind, "measure": measure, "value": float(m.value)})
    return out


# --- the rule --------------------------------------------------------------------------------
def decide(kind: str, reference: dict[str, drift.Profile], batches: Iterable, features: set[str], times: dict[str, str],
           params: DriftParams) -> tuple[dict, dict, list[drift.FeatureDrift]]:
    """The rule for drift (alpha) or skew (skew_alpha): reference profiles against the current
    split's raw values, summarised batch by batch (summaries add up), so memory stays bounded
    whatever the split's size. `batches` are pyarrow RecordBatches or pandas DataFrames.
    Returns (the compared profiles, the current summaries, the decisions)."""
    profiles = time_features.compared_profiles(reference, features, times)
    summaries = streaming_statistics.summarize_batches(profiles, batches, times)
    alpha = params.alpha if kind == DRIFT else params.skew_alpha
    return profiles, summaries, drift.compare(profiles, summaries, params, alpha=alpha)


def current_batches(examples_dir: str | Path, split: str, wanted: set[str], batch_rows: int) -> Iterable:
    """The split's columns drift and skew look at, in record batches."""
    present = [c for c in artifacts.split_columns(examples_dir, split) if c in wanted]
    return artifacts.split_batches(examples_dir, split, batch_rows, columns=present)


def rule_anomalies(kind: str, results: list[drift.FeatureDrift], blocking: bool, split: str = "",
                   what_moved: str = "") -> list[dict]:
    """The rule's changes as report entries; `split` and `what_moved` name what was compared when
    it is not a training run's split (batch scoring)."""
    split = split or (names.TRAIN if kind == DRIFT else names.EVAL)
    return [{"split": split, "feature": r.feature, "kind": kind,
             "anomaly": f"{kind}_{r.effect}", "description": f"{kind}: {what_moved or WHAT_MOVED[kind]}: {r.reason}",
             "value": round(r.effect_value, 6), "threshold": r.threshold, "blocking": blocking,
             "test": r.test, "p_value": r.p_value, "p_corrected": r.p_corrected, "effect": r.effect,
             "psi": r.psi, "n_ref": r.n_ref, "n_cur": r.n_cur}
            for r in results if r.drifted]


def suspicious_anomalies(train_stats, skip: frozenset[str]) -> list[dict]:
    return [{"split": names.TRAIN, "feature": f.feature, "kind": SUSPICIOUS, "anomaly": f.pattern,
             "description": f.description, "value": f.pattern, "threshold": None, "blocking": False}
            for f in column_checks.findings(train_stats, skip)]


def blocking_message(blocking: list[dict]) -> str:
    """One paragraph: each (feature, anomaly) once, with the splits it was found in."""
    grouped: dict[tuple, list[dict]] = {}
    for a in blocking:
        grouped.setdefault((a["feature"], a["kind"], a["anomaly"]), []).append(a)
    parts = []
    for (feature, kind, anomaly), found in grouped.items():
        first = found[0]
        if kind == SCHEMA:
            splits = ", ".join(a["split"] for a in found)
            parts.append(f"feature '{feature}': schema anomaly {anomaly} in the {splits} split"
                         f"{'s' if len(found) > 1 else ''} ({first['value']}: {first['description']})")
        else:
            parts.append(f"feature '{feature}': {first['description']}")
    return f"{len(grouped)} blocking anomal{'y' if len(grouped) == 1 else 'ies'}: " + "; ".join(parts)


# --- inputs ----------------------------------------------------------------------------------
def production_baseline(production_dir: str | Path | None) -> str | None:
    """The training statistics pushed with the production model, from the resolver's artifact;
    None before the first push."""
    if not production_dir or artifacts.read_production(production_dir)["version"] is None:
        return None
    return bundle.path(str(production_dir), names.BASELINE_STATS)


def load_baseline(path: str):
    """The baseline statistics; a file that is not the proto is named, not skipped."""
    try:
        return bundle.read_stats(path)
    except (OSError, ValueError) as error:
        raise DataError(path, f"the baseline statistics are not usable ({error})") from error


def _profiles_file(stats_file: str) -> Path:
    """profiles.json beside a statistics artifact's stats.pb, baseline_profiles.json in a bundle."""
    beside = {names.BASELINE_STATS: names.BASELINE_PROFILES, names.STATS_FILE: names.PROFILES_FILE}
    return Path(stats_file).with_name(beside.get(Path(stats_file).name, names.PROFILES_FILE))


def joint_reference(stats_file: str) -> joint.JointProfile | None:
    """The joint drift reference beside a statistics file; None when there is none."""
    profiles_file = _profiles_file(stats_file)
    if not profiles_file.exists():
        return None
    try:
        return bundle.read_joint(str(profiles_file))
    except ValueError as error:
        raise DataError(str(profiles_file), f"the joint drift reference is not usable ({error})") from error


def decide_joint(reference: joint.JointProfile | None, examples_dir, split: str, params: DriftParams,
                 batch_rows: int) -> joint.JointDrift:
    """The joint check of a split's rows against `reference`, summed batch by batch."""
    summary = None
    if reference is not None:
        for batch in current_batches(examples_dir, split, set(reference.features), batch_rows):
            part = reference.summarize(streaming_statistics.batch_columns(batch), batch.num_rows
                                       if hasattr(batch, "num_rows") else len(batch))
            summary = part if summary is None else summary + part
    return joint.compare_joint(reference, summary, params)


def joint_anomalies(kind: str, result: joint.JointDrift, blocking: bool, split: str, what_moved: str) -> list[dict]:
    """The joint check's change as one report entry naming the features that moved."""
    if not result.drifted:
        return []
    best = result.top[0]
    return [{"split": split, "feature": ", ".join(result.features), "kind": kind, "anomaly": kind,
             "description": f"{kind.replace('_', ' ')}: {what_moved}: {result.reason}",
             "value": round(abs(best.change), 6), "threshold": result.min_change, "blocking": blocking,
             "test": "correlation z", "p_value": best.p_value, "p_corrected": best.p_corrected,
             "effect": "correlation_change", "n_ref": result.n_ref, "n_cur": result.n_cur}]


def reference_profiles(stats_file: str) -> dict[str, drift.Profile]:
    """The drift profiles beside a statistics file (profiles.json in a statistics artifact,
    baseline_profiles.json in a bundle); a baseline pushed before profiles existed falls back to
    profiles read off its TFDV statistics."""
    profiles_file = _profiles_file(stats_file)
    if profiles_file.exists():
        try:
            return bundle.read_profiles(str(profiles_file))
        except ValueError as error:
            raise DataError(str(profiles_file), f"the drift profiles are not usable ({error})") from error
    return drift.profiles_from_statistics(load_baseline(stats_file))


def _compared_features(schema, label: str) -> set[str]:
    """What drift and skew compare: the TRAINING features that are model inputs, and the label."""
    inputs = {f.name for f in schema_view.features(schema, names.ENV_TRAINING)}
    return inputs | ({label} if label else set())


def write_data_card(directory: Path, ingest: dict, stats: dict, schema, label: str, statistics_dir,
                    times: dict, report: list[dict]) -> None:
    """data_card.md and data_card.html (flywheel/report/data_card.py) beside the report."""
    profiles_file = artifacts.profiles_file(statistics_dir, names.TRAIN)
    profiles = bundle.read_profiles(str(profiles_file)) if profiles_file.exists() else {}
    card = data_card.build(ingest, stats, schema_view.by_name(schema, names.ENV_TRAINING), label, profiles, times,
                           report, ingest.get("card_notes") or {})
    (directory / names.DATA_CARD).write_text(data_card.markdown(card))
    (directory / Path(names.DATA_CARD).with_suffix(".html")).write_text(data_card.html_page(card))


def run(statistics_dir: str | Path, schema_path: str | Path, output_dir: str | Path,
        baseline_stats: str | None = None, params: ValidateParams = ValidateParams(),
        source: str = "", examples_dir: str | Path | None = None, drift_params: DriftParams = DriftParams(),
        label: str = "", ingest: dict | None = None, scale: ScaleParams = ScaleParams()) -> list[dict]:
    """Validate the splits; write the report; raise DataError if anything blocks. Drift is measured
    against `baseline_stats` (the production model's training statistics, or a previous file's),
    when given; drift and skew need the raw splits (`examples_dir`), read in record batches of
    `scale.batch_rows` rows whatever the engine (the statistics are small on every path)."""
    import tensorflow_data_validation as tfdv

    source = source or str(statistics_dir)
    schema = schema_view.load(artifacts.schema_input(schema_path))
    stats = {split: bundle.read_stats(str(artifacts.stats_file(statistics_dir, split))) for split in names.SPLITS}
    previous = load_baseline(baseline_stats) if baseline_stats else None
    times = artifacts.time_columns(statistics_dir)

    per_split = {names.TRAIN: tfdv.validate_statistics(
        stats[names.TRAIN], with_tfdv_comparators(schema, stats[names.TRAIN]), environment=names.ENV_TRAINING,
        previous_statistics=previous, serving_statistics=stats[names.EVAL])}
    for split in (names.EVAL, names.TEST):
        per_split[split] = tfdv.validate_statistics(stats[split], schema, environment=names.ENV_TRAINING)
    report = [a for split in names.SPLITS for a in schema_anomalies(per_split[split], split)]

    decisions: dict[str, list[drift.FeatureDrift]] = {DRIFT: [], SKEW: []}
    compared = {}   # kind -> (reference profiles, current summaries), for the HTML report
    joints: dict[str, joint.JointDrift] = {}
    if examples_dir is not None:
        features = _compared_features(schema, label)
        wanted = features | set(times)
        train_stats = str(artifacts.stats_file(statistics_dir, names.TRAIN))
        compared[SKEW] = decide(SKEW, reference_profiles(train_stats),
                                current_batches(examples_dir, names.EVAL, wanted, scale.batch_rows),
                                features, times, drift_params)
        joints[names.JOINT_SKEW] = decide_joint(joint_reference(train_stats), examples_dir, names.EVAL,
                                                drift_params, scale.batch_rows)
        if baseline_stats:
            compared[DRIFT] = decide(DRIFT, reference_profiles(baseline_stats),
                                     current_batches(examples_dir, names.TRAIN, wanted, scale.batch_rows),
                                     features, times, drift_params)
            joints[names.JOINT_DRIFT] = decide_joint(joint_reference(baseline_stats), examples_dir, names.TRAIN,
                                                     drift_params, scale.batch_rows)
        decisions.update({kind: results for kind, (_, _, results) in compared.items()})
        compared = {kind: (profiles, summaries) for kind, (profiles, summaries, _) in compared.items()}
    report += rule_anomalies(SKEW, decisions[SKEW], blocking=True)
    report += rule_anomalies(DRIFT, decisions[DRIFT], blocking=params.block_on_drift)
    if names.JOINT_SKEW in joints:
        report += joint_anomalies(names.JOINT_SKEW, joints[names.JOINT_SKEW], False, names.EVAL, WHAT_MOVED[SKEW])
    if names.JOINT_DRIFT in joints:
        report += joint_anomalies(names.JOINT_DRIFT, joints[names.JOINT_DRIFT], params.block_on_drift, names.TRAIN,
                                  WHAT_MOVED[DRIFT])
    report += suspicious_anomalies(stats[names.TRAIN], frozenset({label, *times}))

    with atomic_dir(output_dir) as staging:
        tfdv.write_anomalies_text(per_split[names.TRAIN], str(staging / names.ANOMALIES_FILE))
        for split in (names.EVAL, names.TEST):
            tfdv.write_anomalies_text(per_split[split], str(staging / f"anomalies_{split}.pbtxt"))
        (staging / names.ANOMALY_REPORT).write_text(json.dumps(report, indent=2, default=_json) + "\n")
        (staging / names.MEASUREMENTS_FILE).write_text(json.dumps(
            {"baseline": baseline_stats or "", "time_columns": times,
             **{kind: [r.as_dict() for r in results] for kind, results in decisions.items()},
             **{kind: result.as_dict() for kind, result in joints.items()},
             "tfdv": tfdv_measurements(per_split[names.TRAIN])}, indent=2, default=_json) + "\n")
        validation_report.write(staging / names.REPORT_HTML, source, baseline_stats, report, decisions, compared,
                                times, drift_params, joints=joints)
        write_data_card(staging, ingest or {"source": source}, stats, schema, label, statistics_dir, times, report)

    blocking = [a for a in report if a["blocking"]]
    if blocking:
        raise DataError(source, blocking_message(blocking), column=blocking[0]["feature"],
                        hint=f"The full report is {Path(output_dir) / names.ANOMALY_REPORT}.")
    return report


def _json(value):
    """numpy scalars and non-finite floats in the report: plain numbers, or null."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not np.isfinite(value) else value


@flywheel_component
def validate_component(statistics: dsl.Input[dsl.Artifact], schema: dsl.Input[dsl.Artifact],
                       examples: dsl.Input[dsl.Dataset], production: dsl.Input[dsl.Artifact], params: dict,
                       drift: dict, scale: dict, anomalies: dsl.Output[dsl.Artifact],
                       data_card: dsl.Output[dsl.Markdown], report: dsl.Output[dsl.HTML]):
    """Schema anomalies, drift against the production model's baseline, train/eval skew, with
    params.yaml's `validate`, `drift` and `scale` sections; the data card; `report`, the
    self-contained HTML page of it all (the KFP UI shows it). Fails the task on blocking anomalies
    (the report and the data card are written first)."""
    import os
    import shutil

    from components.kfp_component import set_metadata
    from components.validate import DRIFT, production_baseline, run
    from flywheel import names
    from flywheel import params as flywheel_params

    version = production.metadata.get("version")
    anomalies.metadata["baseline"] = f"version {version}" if version is not None else "none (first run)"
    settings = flywheel_params.build(flywheel_params.ValidateParams, params, "validate")
    rule = flywheel_params.build(flywheel_params.DriftParams, drift, "drift")
    anomalies.metadata["params"] = {"validate": flywheel_params.section_dict(settings),
                                    "drift": flywheel_params.section_dict(rule)}
    try:
        found = run(statistics_dir=statistics.path, schema_path=schema.path, output_dir=anomalies.path,
                    baseline_stats=production_baseline(production.path), params=settings,
                    source=statistics.metadata.get("source", ""), examples_dir=examples.path, drift_params=rule,
                    label=examples.metadata.get("label", ""), ingest=dict(examples.metadata),
                    scale=flywheel_params.build(flywheel_params.ScaleParams, scale, "scale"))
    finally:
        for written, output in ((names.DATA_CARD, data_card), (names.REPORT_HTML, report)):
            if os.path.exists(os.path.join(anomalies.path, written)):
                shutil.copyfile(os.path.join(anomalies.path, written), output.path)
    set_metadata(anomalies, {"anomalies": len(found), "blocking": 0,
                             "drifted": sorted({a["feature"] for a in found if a["kind"] == DRIFT})})
