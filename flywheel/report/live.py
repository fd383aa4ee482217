"""A report of the live window from what the monitoring sidecar exports: per feature, the measures
it computes on its window of served values (`flywheel_feature_drift{feature, measure}`), beside the
served version's reference profile (its training split, read from the model repository).

The sidecar exports numbers, not the window's values: the chart draws the reference's distribution
and the card its live measures; a decision is shown when the sidecar exports one (a `drifted`
measure), otherwise the features are ordered by their PSI against the drift rule's PSI threshold.
Where the numbers come from (an HTTP scrape, a file, Prometheus) is the caller's business.
"""
from __future__ import annotations

import math
from typing import Mapping

from flywheel.drift import Profile
from flywheel.report import build, charts
from flywheel.report import joint as joint_section
from flywheel.report.charts import number
from flywheel.report.model import (
    CHANGED,
    MEASURED,
    NOT_COMPARED,
    UNCHANGED,
    WATCH,
    Anomaly,
    Comparison,
    FeatureView,
    Report,
)

KEY = "live"
DRIFTED = "drifted"         # a measure that is a decision (1: changed), when the sidecar exports one
PSI = "psi"
ROWS = "rows"


def _decision(values: Mapping[str, float], materiality: float) -> str:
    """The sidecar's decision when it exports one; else a PSI at or above the rule's threshold is
    a change to watch (material, but no test confirms it), and anything below is only measured."""
    if DRIFTED in values:
        return CHANGED if values[DRIFTED] >= 1 else UNCHANGED
    return WATCH if materiality >= 1 else MEASURED


def feature_view(feature: str, profile: Profile | None, values: Mapping[str, float],
                 psi_threshold: float) -> FeatureView:
    chart = charts.chart(profile) if profile is not None else charts.Chart(
        charts.LEVELS, (), note="the served version's baseline has no profile of this feature")
    shown = tuple((name, number(value) if name != DRIFTED else ("yes" if value >= 1 else "no"))
                  for name, value in sorted(values.items()))
    psi = values.get(PSI, math.nan)
    materiality = values.get("materiality", psi / psi_threshold if psi_threshold else math.nan)
    decision = _decision(values, materiality) if values else NOT_COMPARED
    if decision in (MEASURED, WATCH):
        reason = (f"the sidecar's measures on its window: PSI {number(psi)} "
                  f"({'at or above' if psi >= psi_threshold else 'below'} the drift rule's {number(psi_threshold)})"
                  if math.isfinite(psi) else "the sidecar's measures on its window")
    else:
        reason = {CHANGED: "the sidecar decided the window changed", UNCHANGED: "the sidecar found no material change",
                  NOT_COMPARED: "the sidecar exports no measure of this feature"}[decision]
    return FeatureView(feature, chart, decision, reason, shown, materiality,
                       f"PSI {number(psi)} / {number(psi_threshold)}" if math.isfinite(psi) else "")


def report(model: str, version: int | str, source: str, profiles: Mapping[str, Profile],
           measures: Mapping[str, Mapping[str, float]], window_rows: float,
           predictions: Mapping[str, float] | None = None, psi_threshold: float = 0.25,
           schema_anomalies: Mapping[tuple[str, str], float] | None = None, joint=None) -> Report:
    """`measures`: feature -> {measure: value} as the sidecar exports them; `profiles`: the served
    version's reference profiles; `schema_anomalies`: (feature, kind) -> served values that broke
    the SERVING schema since the sidecar started; `joint`: the sidecar's joint drift check
    (flywheel/report/joint.py `from_measures`), drawn as a section of its own."""
    features = tuple(feature_view(name, profiles.get(name), values, psi_threshold)
                     for name, values in sorted(measures.items()))
    note = (f"The sidecar exports its window's measures, not the window's values: the charts show the reference "
            f"(the training split of version {version}); the measures are the window's "
            f"({number(window_rows)} rows).")
    comparison = Comparison(KEY, f"Live window of {model} v{version} against its training baseline",
                            f"baseline (training split of v{version})", "live window",
                            features, note)
    facts = [("model", f"{model} v{version}"), ("metrics", source), ("window rows", number(window_rows))]
    if predictions:
        facts.append(("prediction drift", ", ".join(f"{k} {number(v)}" for k, v in sorted(predictions.items()))))
    anomalies = tuple(Anomaly(feature, "schema", kind, f"{number(count)} served values since the sidecar started")
                      for (feature, kind), count in sorted((schema_anomalies or {}).items()) if count > 0)
    sections = (comparison,)
    if joint is not None:
        sections += (joint_section.comparison(
            "joint", f"Live joint drift of {model} v{version}: how features move together",
            f"baseline (training split of v{version})", "live window", joint),)
    return Report(f"Live drift report: {model} v{version}", tuple(facts), anomalies, sections, build.now())
