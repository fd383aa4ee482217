"""Evaluate: metrics on the test split, per slice, against the production model; the blessing.

The blessing also needs the fairness criteria over slices of the test rows to pass
(flywheel/evaluation/fairness.py): its reason then names the criterion and the slice that failed.

Both models are scored through their `serving_default` signature, the same call TF Serving
makes, so what is evaluated is what would be served. The production model is the one the
resolve step found (components/resolve.py): the run records which version it compared with.
"""

import dataclasses
import json
import os
import time

import numpy as np
import pandas as pd
from kfp import dsl

from components import model_families, model_inputs
from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, labels, names
from flywheel.errors import DataError
from flywheel.evaluation import baselines, fairness, fairness_chart
from flywheel.evaluation import evaluation_metrics as em
from flywheel.evaluation import performance_estimation as pe
from flywheel.params import EvaluateParams
from flywheel.report import model_card


@dataclasses.dataclass
class Evaluation:
    task: str
    primary_metric: str
    metrics: dict
    fairness: dict           # fairness.FairnessReport.to_dict(): slices, intervals, gaps, failures
    slice_gap: float         # the largest gap in the primary metric between slices of one feature
    blessed: bool
    reason: str
    production_version: int | None = None
    production_metrics: dict | None = None
    confusion_matrix: dict | None = None
    roc_curve: dict | None = None
    performance_estimation: dict | None = None   # CBPE's calibration map and check (None: regression)
    baselines: dict | None = None   # baselines.Baselines.to_dict(): the majority class or mean, a linear model
    # baseline -> {"lead", "low", "high"}: the candidate's lead over it on the test rows, paired interval
    baseline_leads: dict | None = None
    test_rows: int = 0
    seconds: float = 0.0


def bless(task: str, metrics: dict, production: dict | None, params: EvaluateParams,
          simple: baselines.Baselines | None = None, leads: dict | None = None, family: str = "") -> tuple[bool, str]:
    """The blessing and its reason. `leads` (baseline -> (point, low, high) of the candidate's lead
    on the test rows, from lead_intervals) makes the baselines' test a paired interval: the
    candidate must beat the trivial and the linear baseline by more than the interval, unless it
    is the linear model itself (`family`)."""
    metric = em.primary_metric(task)
    value = metrics[metric]
    if not np.isfinite(value):
        return False, f"{metric} is not defined on the test split (one class only?)"
    if simple is not None and params.baselines_gate:
        for name in (simple.trivial, baselines.LINEAR):
            reference = simple.values.get(name, float("nan"))
            if not np.isfinite(reference):
                continue
            if name == baselines.LINEAR and family == model_families.LINEAR:
                continue   # the candidate is the linear model: nothing simpler to beat but the trivial one
            lead = (leads or {}).get(name)
            if lead is not None:
                point, low, high = lead
                if not low > 0:
                    return False, (f"{metric} {value:.4f} does not beat the {name} baseline's {reference:.4f} by more "
                                   f"than its interval (lead {point:+.4f}, {params.confidence:.0%} interval "
                                   f"[{low:+.4f}, {high:+.4f}])" + _what_ships_instead(name))
            elif em.worse_by(metric, value, reference) >= 0:
                return False, (f"{metric} {value:.4f} does not beat the {name} baseline's {reference:.4f}"
                               + _what_ships_instead(name))
    if task == names.BINARY and value < params.min_auc:
        return False, f"auc {value:.4f} is below the floor {params.min_auc}"
    if task == names.MULTICLASS and value < params.min_accuracy:
        return False, f"accuracy {value:.4f} is below the floor {params.min_accuracy}"
    if task == names.REGRESSION and params.max_rmse > 0 and value > params.max_rmse:
        return False, f"rmse {value:.4f} is above the ceiling {params.max_rmse}"
    if production is None:
        return True, f"{metric} {value:.4f} passes the floor; no production model to compare with"
    baseline = production[metric]
    worse_by = em.worse_by(metric, value, baseline)
    if worse_by > params.allowed_regression:
        return False, (f"{metric} {value:.4f} is worse than production's {baseline:.4f} by {worse_by:.4f}, "
                       f"more than the allowed {params.allowed_regression}")
    return True, f"{metric} {value:.4f} vs production {baseline:.4f} (allowed regression {params.allowed_regression})"


def _what_ships_instead(baseline: str) -> str:
    if baseline == baselines.LINEAR:
        return "; train.families: [linear] would ship the linear model itself"
    return " (a model that learned nothing scores that)"


def lead_intervals(labels: np.ndarray, outputs: dict, simple: baselines.Baselines, params: EvaluateParams) -> dict:
    """baseline -> (point, low, high) of the candidate's lead over it on the same test rows."""
    return {name: model_families.lead_interval(simple.metric, labels, outputs, answers, params.confidence,
                                               params.bootstrap_resamples, params.bootstrap_seed)
            for name, answers in simple.outputs.items()}


def finite_answers(test: pd.DataFrame, outputs: dict) -> tuple[pd.DataFrame, dict, str]:
    """(rows the model answered with finite numbers, their outputs, "" or the refusal naming the others)."""
    bad = model_families.not_finite_rows(outputs)
    if not len(bad):
        return test, outputs, ""
    keep = np.ones(len(test), dtype=bool)
    keep[bad] = False
    named = ", ".join(str(i) for i in test.index[bad][:model_families.NAMED_ROWS])
    reason = (f"the model answers NaN or infinity for {len(bad)} of {len(test)} test rows (rows {named}"
              f"{', ...' if len(bad) > model_families.NAMED_ROWS else ''} of the test split); the metrics are "
              "of the other rows")
    return test[keep], {k: v[keep] for k, v in outputs.items()}, reason


def with_fairness(blessed: bool, reason: str, report: fairness.FairnessReport) -> tuple[bool, str]:
    """The blessing with the fairness criteria applied: refused when any failed, the reason naming it."""
    if report.passed:
        return blessed, reason
    failed = report.failures[0].message + (f" (and {len(report.failures) - 1} more fairness failures)"
                                           if len(report.failures) > 1 else "")
    return False, (f"{reason}; " if not blessed else "") + f"fairness: {failed}"


def scored_rows(examples_dir: str, split: str, metadata: dict) -> pd.DataFrame:
    """The rows of a split evaluate scores, in its order: those with a label the model knows.
    eval_predictions.json holds the candidate's scores of exactly these rows (infra validation
    compares the served answers with them)."""
    frame = model_inputs.read_split(examples_dir, split)
    label = metadata["label"]
    if label not in frame:
        raise DataError(f"the {split} split in {examples_dir}", "the label column is missing", column=label)
    frame = frame[frame[label].notna()]
    if metadata.get("label_vocabulary"):
        frame = frame[frame[label].isin(metadata["label_vocabulary"])]
    if frame.empty:
        raise DataError(f"the {split} split in {examples_dir}", "no row has a label value the model knows",
                        column=label)
    return frame


def performance_estimation(examples_dir: str, model_dir: str, metadata: dict, encoded: np.ndarray, outputs: dict,
                           params: EvaluateParams) -> dict | None:
    """CBPE for classifiers: a calibration map fitted on the eval split, checked on the test split
    (rows it never saw) against the realised accuracy; None for regression."""
    task = metadata["task"]
    if task == names.BINARY:
        eval_rows = scored_rows(examples_dir, names.EVAL, metadata)
        eval_labels = labels.encode(eval_rows[metadata["label"]], task, metadata.get("label_vocabulary", []))
        eval_outputs, _ = model_inputs.predict(model_dir, eval_rows)
        calibration = pe.fit_calibration(eval_outputs[names.OUTPUT_SCORE], eval_labels, params.calibration_bins)
        check = pe.check_binary(calibration, outputs[names.OUTPUT_SCORE], encoded, params.calibration_bins,
                                params.max_calibration_error, params.max_estimate_error)
        return {"task": task, "calibration": calibration.to_dict(), "fitted_on": names.EVAL,
                "fitted_rows": int(len(eval_rows)), "check": check.to_dict()}
    if task == names.MULTICLASS:
        check = pe.check_multiclass(outputs[names.OUTPUT_PROBABILITIES], encoded, params.max_estimate_error)
        return {"task": task, "calibration": None, "check": check.to_dict()}
    return None


def _production(production_dir: str | None) -> tuple[int | None, str]:
    if not production_dir:
        return None, ""
    found = artifacts.read_production(production_dir)
    return found["version"], found["uri"]


def run(examples_dir: str, model_dir: str, output_dir: str, params: EvaluateParams = EvaluateParams(),
        production_dir: str | None = None, model_name: str = "", data_version: str = "") -> Evaluation:
    """Evaluate `model_dir` on <examples_dir>/test and the production model on the same rows.

    Writes blessing.json, metrics.json, eval_predictions.json, model_card.md, fairness.png and,
    for a classifier, calibration.json to output_dir."""
    started = time.time()
    metadata = bundle.read_metadata(model_dir)
    label, task = metadata["label"], metadata["task"]
    test = scored_rows(examples_dir, names.TEST, metadata)
    answers, _ = model_inputs.predict(model_dir, test)   # every scored row's, for eval_predictions.json
    test, outputs, not_finite = finite_answers(test, answers)
    if test.empty:
        raise DataError(f"the test split in {examples_dir}", not_finite)
    encoded = labels.encode(test[label], task, metadata.get("label_vocabulary", []))
    metrics = em.task_metrics(task, encoded, outputs)
    metric = em.primary_metric(task)

    production_version, production_uri = _production(production_dir)
    production_metrics, production_scored = None, None
    if production_version is not None:
        production_meta = bundle.read_metadata(str(production_dir))
        if (production_meta["label"], production_meta["task"]) != (label, task):
            raise DataError(
                production_uri, f"the production model predicts '{production_meta['label']}' ({production_meta['task']}) "
                f"but the candidate predicts '{label}' ({task})", column=label,
                hint="Use another model name for another target.")
        production_outputs, _ = model_inputs.predict(production_uri, test)
        production_labels = labels.encode(test[label], task, production_meta.get("label_vocabulary", []))
        production_metrics = em.task_metrics(task, production_labels, production_outputs)
        production_scored = (production_labels, production_outputs)
    train_rows = model_inputs.read_split(examples_dir, names.TRAIN)
    simple = baselines.assess(train_rows, test, metadata, model_inputs.model_features(metadata))
    leads = lead_intervals(encoded, outputs, simple, params)
    blessed, reason = bless(task, metrics, production_metrics, params, simple, leads, metadata.get("family", ""))
    if not_finite:
        blessed, reason = False, not_finite
    fair = fairness.assess(test, task, encoded, outputs, params, production=production_scored, label=label)
    blessed, reason = with_fairness(blessed, reason, fair)
    estimation = performance_estimation(examples_dir, model_dir, metadata, encoded, outputs, params)

    result = Evaluation(task=task, primary_metric=metric, metrics=metrics, fairness=fair.to_dict(),
                        slice_gap=max((g.largest for g in fair.gaps), default=0.0),
                        blessed=blessed, reason=reason, production_version=production_version,
                        production_metrics=production_metrics, performance_estimation=estimation,
                        baselines=simple.to_dict(),
                        baseline_leads={k: dict(zip(("lead", "low", "high"), v)) for k, v in leads.items()},
                        test_rows=int(len(test)))
    vocabulary = metadata.get("label_vocabulary", [])
    if task == names.BINARY:
        result.roc_curve = em.roc_curve(encoded, outputs[names.OUTPUT_SCORE])
        result.confusion_matrix = em.confusion(encoded, outputs[names.OUTPUT_SCORE] >= 0.5, vocabulary)
    elif task == names.MULTICLASS:
        result.confusion_matrix = em.confusion(encoded, outputs[names.OUTPUT_PROBABILITIES].argmax(axis=1), vocabulary)
    result.seconds = time.time() - started

    # All five files or none: push must never find a blessing without the files it copies.
    with atomic_dir(output_dir) as staging:
        _write_json(os.path.join(staging, names.BLESSING_FILE),
                    {"blessed": blessed, "reason": reason, "metric": metric, "candidate": metrics[metric],
                     "production_version": production_version,
                     "production": production_metrics[metric] if production_metrics else None,
                     "baselines": simple.to_dict(), "family": metadata.get("family", ""),
                     "fairness": {"passed": fair.passed, "failures": [f.message for f in fair.failures]}})
        _write_json(os.path.join(staging, names.EVALUATION_FILE), dataclasses.asdict(result))
        _write_json(os.path.join(staging, names.EVAL_PREDICTIONS),
                    {"values": [float(v) for v in answers[names.OUTPUT_SCORE]]})
        fairness_chart.write_png(fair, os.path.join(staging, names.FAIRNESS_CHART))
        if estimation is not None:
            _write_json(os.path.join(staging, names.CALIBRATION), estimation)
        with open(os.path.join(staging, names.MODEL_CARD), "w") as f:
            f.write(model_card.render(model_name, metadata, result, data_version))
    return result


def _write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(finite_or_none(value), f, indent=2, default=float, allow_nan=False)


def finite_or_none(value):
    """`value` with every NaN or infinite number as None: JSON, KFP metadata and the reports take
    no NaN (a metric that is not defined is absent, and the reason says why)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@flywheel_component
def evaluate_component(examples: dsl.Input[dsl.Dataset], model: dsl.Input[dsl.Model],
                       production: dsl.Input[dsl.Artifact], params: dict, push: dict,
                       evaluation: dsl.Output[dsl.Artifact], metrics: dsl.Output[dsl.Metrics],
                       classification_metrics: dsl.Output[dsl.ClassificationMetrics],
                       model_card: dsl.Output[dsl.Markdown]):
    """Metrics, slices and the blessing against the resolved production model, with params.yaml's
    `evaluate` section (`push` names the model in the card)."""
    import os
    import shutil

    from components.evaluate import finite_or_none, run
    from components.kfp_component import set_metadata
    from flywheel import names
    from flywheel import params as flywheel_params

    result = run(examples.path, model.path, evaluation.path,
                 flywheel_params.build(flywheel_params.EvaluateParams, params, "evaluate"),
                 production_dir=production.path,
                 model_name=flywheel_params.build(flywheel_params.PushParams, push, "push").model_name,
                 data_version=examples.metadata.get("data_version", ""))
    for key, value in {**result.metrics, "slice_gap": result.slice_gap}.items():
        if finite_or_none(value) is not None:   # KFP metadata takes no NaN: an undefined metric is left out
            metrics.log_metric(key, value)
    if result.roc_curve:
        roc = result.roc_curve
        classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    if result.confusion_matrix:
        classification_metrics.log_confusion_matrix(result.confusion_matrix["categories"],
                                                    result.confusion_matrix["matrix"])
    shutil.copyfile(os.path.join(evaluation.path, names.MODEL_CARD), model_card.path)
    evaluation.metadata["params"] = flywheel_params.section_dict(
        flywheel_params.build(flywheel_params.EvaluateParams, params, "evaluate"))
    set_metadata(evaluation, finite_or_none({
        "blessed": result.blessed, "reason": result.reason,
        "fairness": result.fairness["summary"], "baselines": result.baselines,
        "baseline_leads": result.baseline_leads, "production_version": result.production_version,
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
        "production_metrics": {k: v for k, v in (result.production_metrics or {}).items()
                               if isinstance(v, (int, float))}}))
