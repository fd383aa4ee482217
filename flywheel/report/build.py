"""Reports from the drift rule's results: each compared feature's reference profile, the current
values counted in its bins, and its FeatureDrift, as a comparison of the report."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Mapping

from flywheel.drift import FeatureDrift, Profile
from flywheel.report import charts
from flywheel.report.model import Anomaly, Comparison, Report, view


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
        summary = profile.summarize(values) if values is not None else None
        features.append(view(result, charts.chart(profile, summary), rule.alpha, result.feature in rule.blocking))
    return Comparison(rule.key, rule.title, rule.reference_name, rule.current_name, tuple(features), rule.note)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report(title: str, facts: list[tuple[str, str]], anomalies: tuple[Anomaly, ...],
           rules: list[RuleComparison]) -> Report:
    return Report(title, tuple(facts), anomalies, tuple(comparison(r) for r in rules if r.results), now())
