"""Validate: schema anomalies, drift against the previous span, train/eval skew (TFDV).

Comparators follow TFDV: L-infinity distance for features whose statistics are categorical
(string features, and integer features the schema marks categorical), approximate
Jensen-Shannon divergence for numeric ones, thresholds from params.yaml (`validate`). Features
with a time_domain (epoch timestamps) get no comparator: each span covers new dates, so their
distribution moves by definition.

What blocks (raises DataError, so the KFP task fails and nothing downstream runs):
- every schema anomaly on any split: a changed type, a column added or removed, values outside
  a domain (beyond the schema's min_domain_mass), too few values present, ... The schema is
  where tolerance is curated; once it says no, training on the data would be wrong.
- train/eval skew above threshold: train and eval come from one span through a hash split,
  so a difference between them is a defect in the data or the pipeline, never news.
What is reported and does not block, by default:
- drift against the previous span above threshold. Drift is why the flywheel retrains; the
  evaluator keeps a worse model out of production. `block_on_drift=True` makes it block.

Outputs: `anomalies.pbtxt` (TFDV Anomalies of train: schema, drift and skew), `anomalies_eval.pbtxt`
and `anomalies_test.pbtxt` (schema only), `report.json` (the list of anomalies: split, feature,
kind, anomaly, description, value, threshold, blocking) and `measurements.json` (every drift and
skew distance, also those under threshold). They are written before the error is raised, so a
person can read them.
"""
import json
from pathlib import Path

from kfp import dsl

from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, names, schema_view
from flywheel.errors import DataError
from flywheel.params import ValidateParams

SCHEMA = "schema"
DRIFT = "drift"
SKEW = "skew"
MEASURES = {"L_INFTY": "linf", "JENSEN_SHANNON_DIVERGENCE": "jsd"}


def with_comparators(schema, train_stats, thresholds: ValidateParams):
    """A copy of the schema with a drift and a skew comparator on every feature that has
    statistics, chosen by what the statistics hold (string -> L-inf, numeric -> JSD)."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    stats_by_name = {f.path.step[0]: f for f in train_stats.datasets[0].features if f.path.step}
    for feature in out.feature:
        stats = stats_by_name.get(feature.name)
        if stats is None or feature.HasField("time_domain"):
            continue
        if stats.HasField("string_stats"):
            feature.drift_comparator.infinity_norm.threshold = thresholds.drift_linf
            feature.skew_comparator.infinity_norm.threshold = thresholds.skew_linf
        elif stats.HasField("num_stats"):
            feature.drift_comparator.jensen_shannon_divergence.threshold = thresholds.drift_jsd
            feature.skew_comparator.jensen_shannon_divergence.threshold = thresholds.skew_jsd
    return out


def _type_name(reason_type: int) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    return anomalies_pb2.AnomalyInfo.Type.Name(reason_type)


def schema_anomalies(anomalies, split: str) -> list[dict]:
    """Schema reasons (not comparator ones, which drift_skew_info reports with their values)."""
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


def measurements(anomalies) -> list[dict]:
    """Every drift and skew distance TFDV computed, under threshold or not."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    out = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for kind, group in ((DRIFT, info.drift_measurements), (SKEW, info.skew_measurements)):
            for m in group:
                measure = MEASURES.get(anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type), "other")
                out.append({"feature": feature, "kind": kind, "measure": measure, "value": float(m.value),
                            "threshold": float(m.threshold)})
    return out


def comparator_anomalies(measured: list[dict], block_on_drift: bool) -> list[dict]:
    against = {DRIFT: "the previous span (the production model's training split)", SKEW: "the eval split"}
    name = {"linf": "L-infinity distance", "jsd": "Jensen-Shannon divergence"}
    found = []
    for m in measured:
        if m["value"] <= m["threshold"]:
            continue
        found.append({
            "split": names.TRAIN, "feature": m["feature"], "kind": m["kind"], "anomaly": f"{m['kind']}_{m['measure']}",
            "description": f"{m['kind']}: {name.get(m['measure'], m['measure'])} {m['value']:.4f} between train and "
                           f"{against[m['kind']]} is above the threshold {m['threshold']:g}",
            "value": round(m["value"], 6), "threshold": m["threshold"],
            "blocking": m["kind"] == SKEW or block_on_drift,
        })
    return found


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
            parts.append(f"feature '{feature}': {first['description']} (value {first['value']})")
    return f"{len(grouped)} blocking anomal{'y' if len(grouped) == 1 else 'ies'}: " + "; ".join(parts)


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


def run(statistics_dir: str | Path, schema_path: str | Path, output_dir: str | Path,
        baseline_stats: str | None = None, params: ValidateParams = ValidateParams(),
        source: str = "") -> list[dict]:
    """Validate the splits' statistics; write the report; raise DataError if anything blocks.
    Drift is measured against `baseline_stats` (the production model's training statistics, or
    a previous file's), when given."""
    import tensorflow_data_validation as tfdv

    source = source or str(statistics_dir)
    schema = schema_view.load(artifacts.schema_input(schema_path))
    stats = {split: bundle.read_stats(str(artifacts.stats_file(statistics_dir, split))) for split in names.SPLITS}
    previous = load_baseline(baseline_stats) if baseline_stats else None

    compared = with_comparators(schema, stats[names.TRAIN], params)
    per_split = {names.TRAIN: tfdv.validate_statistics(stats[names.TRAIN], compared, environment=names.ENV_TRAINING,
                                                       previous_statistics=previous,
                                                       serving_statistics=stats[names.EVAL])}
    for split in (names.EVAL, names.TEST):
        per_split[split] = tfdv.validate_statistics(stats[split], schema, environment=names.ENV_TRAINING)

    measured = measurements(per_split[names.TRAIN])
    report = [a for split in names.SPLITS for a in schema_anomalies(per_split[split], split)]
    report += comparator_anomalies(measured, params.block_on_drift)

    with atomic_dir(output_dir) as staging:
        tfdv.write_anomalies_text(per_split[names.TRAIN], str(staging / names.ANOMALIES_FILE))
        for split in (names.EVAL, names.TEST):
            tfdv.write_anomalies_text(per_split[split], str(staging / f"anomalies_{split}.pbtxt"))
        (staging / names.ANOMALY_REPORT).write_text(json.dumps(report, indent=2) + "\n")
        (staging / names.MEASUREMENTS_FILE).write_text(json.dumps(
            {"baseline": baseline_stats or "", "measurements": measured}, indent=2) + "\n")

    blocking = [a for a in report if a["blocking"]]
    if blocking:
        raise DataError(source, blocking_message(blocking), column=blocking[0]["feature"],
                        hint=f"The full report is {Path(output_dir) / names.ANOMALY_REPORT}.")
    return report


@flywheel_component
def validate_component(statistics: dsl.Input[dsl.Artifact], schema: dsl.Input[dsl.Artifact],
                       production: dsl.Input[dsl.Artifact], params: dict, anomalies: dsl.Output[dsl.Artifact]):
    """Anomalies, drift against the production model's baseline statistics, train/eval skew, with
    params.yaml's `validate` section. Fails the task on blocking anomalies (components/validate.py)."""
    from components.validate import production_baseline, run
    from flywheel import params as flywheel_params

    version = production.metadata.get("version")
    anomalies.metadata["baseline"] = f"version {version}" if version is not None else "none (first run)"
    report = run(statistics_dir=statistics.path, schema_path=schema.path, output_dir=anomalies.path,
                 baseline_stats=production_baseline(production.path),
                 params=flywheel_params.build(flywheel_params.ValidateParams, params, "validate"),
                 source=statistics.metadata.get("source", ""))
    anomalies.metadata.update({"anomalies": len(report), "blocking": 0})
