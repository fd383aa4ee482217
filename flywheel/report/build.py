"""Reports from the drift rule's results (each compared feature's reference profile, the current
values counted in its bins, and its FeatureDrift, as a comparison of the report), and pages of
distributions side by side without a decision (the statistics step's)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Mapping

import numpy as np

from flywheel.drift import FeatureDrift, Profile
from flywheel.drift.profiles import CategoricalSummary, NumericProfile, NumericSummary
from flywheel.report import charts
from flywheel.report.charts import number
from flywheel.report.model import PROFILE, Anomaly, Comparison, FeatureView, Report, view


@dataclasses.dataclass(frozen=True)
class RuleComparison:
    """One application of the drift rule: what it compared and what it decided."""
    key: str                                    # "drift", "skew"
    title: str
    reference_name: str                         # legend: the reference side
    current_name: str                           # legend: the current side
    results: list[FeatureDrift]
    reference: Mapping[str, Profile]            # profiles by feature (time parts included)
    current: Mapping[str, Any]                  # raw current values by feature (time parts included)
    alpha: float
    blocking: frozenset[str] = frozenset()      # features whose change blocks
    note: str = ""


def comparison(rule: RuleComparison) -> Comparison:
    features = []
    for result in rule.results:
        profile = rule.reference.get(result.feature)
        if profile is None:
            continue
        values = rule.current.get(result.feature)
        summary = _summary(profile, values) if values is not None else None
        features.append(view(result, charts.chart(profile, summary), rule.alpha, result.feature in rule.blocking))
    return Comparison(rule.key, rule.title, rule.reference_name, rule.current_name, tuple(features), rule.note)


def _summary(profile: Profile, values):
    """Current values counted in the profile's bins; a summary made batch by batch (data too large
    to hold: flywheel/drift summaries add up) is taken as it is."""
    return values if isinstance(values, (NumericSummary, CategoricalSummary)) else profile.summarize(values)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report(title: str, facts: list[tuple[str, str]], anomalies: tuple[Anomaly, ...],
           rules: list[RuleComparison]) -> Report:
    return Report(title, tuple(facts), anomalies, tuple(comparison(r) for r in rules if r.results), now())


def _described(profile: Profile, summary) -> tuple[tuple[str, str], ...]:
    shown = [("n", f"{number(profile.n)} / {number(summary.n)}"),
             ("missing", f"{number(profile.missing)} / {number(summary.missing)}")]
    if isinstance(profile, NumericProfile):
        shown += [("mean", number(profile.mean)), ("sd", number(profile.sd)),
                  ("range", f"{number(profile.minimum)} – {number(profile.maximum)}")]
    else:
        shown.append(("levels listed", number(len(profile.levels))))
    return tuple(shown)


def side_by_side(key: str, title: str, reference_name: str, current_name: str, profiles: Mapping[str, Profile],
                 current: Mapping[str, Any], note: str = "") -> Comparison:
    """Each profiled column beside the current values counted in its bins, without a decision."""
    features = []
    for name, profile in profiles.items():
        values = current.get(name)
        summary = _summary(profile, values if values is not None else np.array([], dtype=object))
        features.append(FeatureView(name, charts.chart(profile, summary), PROFILE,
                                    f"n and missing: {reference_name} / {current_name}",
                                    _described(profile, summary)))
    return Comparison(key, title, reference_name, current_name, tuple(features), note)
