"""What a report says, independent of where the numbers come from (a validation, a live window)
and of how it is drawn (flywheel/report/render.py).

A report is a title, a few facts, the anomalies, and comparisons (drift, skew, a live window), each
a list of features with their chart, decision, reason and measures. Decisions have a severity, and
the summary table sorts by it: blocking > changed > watch (a real but small change, or a large one
the test does not confirm) > no change > not compared.
"""
from __future__ import annotations

import dataclasses
import math

from flywheel.drift.compare import NONE, WASSERSTEIN_SD, FeatureDrift
from flywheel.report.charts import Chart, number

BLOCKING, CHANGED, WATCH, UNCHANGED, NOT_COMPARED, MEASURED, PROFILE = (
    "blocking", "changed", "watch", "no change", "not compared", "measured", "profile")
# PROFILE: a distribution shown without a decision (the statistics step's page).
SEVERITY = {BLOCKING: 5, CHANGED: 4, WATCH: 3, MEASURED: 2, UNCHANGED: 1, PROFILE: 1, NOT_COMPARED: 0}
TEST_NAMES = {"ks": "KS", "chi2": "chi-squared", "ks+chi2": "KS + chi-squared", NONE: "none"}


@dataclasses.dataclass(frozen=True)
class FeatureView:
    feature: str
    chart: Chart
    decision: str                               # one of SEVERITY's keys
    reason: str
    measures: tuple[tuple[str, str], ...]       # (name, value as text), in reading order
    materiality: float = math.nan               # effect / threshold: orders features of one severity
    effect: str = ""                            # the deciding effect, short ("W1 0.42 sd / 0.1")

    @property
    def severity(self) -> int:
        return SEVERITY[self.decision]

    @property
    def rank(self) -> tuple[int, float]:
        """Sort key: the most severe first, then the largest effect against its threshold."""
        return -self.severity, -(self.materiality if math.isfinite(self.materiality) else -1.0)


@dataclasses.dataclass(frozen=True)
class Comparison:
    key: str                                    # "drift", "skew", "live": anchors and the summary's column
    title: str
    reference: str                              # legend names of the two sides
    current: str
    features: tuple[FeatureView, ...]
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Anomaly:
    feature: str
    kind: str                                   # schema | drift | skew | suspicious
    anomaly: str
    description: str
    split: str = ""
    blocking: bool = False


@dataclasses.dataclass(frozen=True)
class Report:
    title: str
    facts: tuple[tuple[str, str], ...]          # header lines: (name, value)
    anomalies: tuple[Anomaly, ...]
    comparisons: tuple[Comparison, ...]
    generated: str = ""                         # when, as text (UTC)
    decides: bool = True                        # False: distributions only (no verdict, no summary table)

    @property
    def blocking(self) -> int:
        return sum(a.blocking for a in self.anomalies)

    def ranked(self) -> list[tuple[Comparison, FeatureView]]:
        """Every (comparison, feature), the most severe first, then the largest effect."""
        rows = [(c, f) for c in self.comparisons for f in c.features]
        return sorted(rows, key=lambda cf: (*cf[1].rank, cf[0].key, cf[1].feature))


def anomalies_from_report(rows: list[dict]) -> tuple[Anomaly, ...]:
    """The validate step's report.json rows, blocking ones first."""
    found = [Anomaly(str(r.get("feature", "")), str(r.get("kind", "")), str(r.get("anomaly", "")),
                     str(r.get("description", "")), str(r.get("split", "")), bool(r.get("blocking")))
             for r in rows]
    return tuple(sorted(found, key=lambda a: not a.blocking))


def effect_text(effect: str, value: float, threshold: float) -> str:
    unit = " sd" if effect == WASSERSTEIN_SD else ""
    name = "W1" if effect == WASSERSTEIN_SD else "L-inf"
    return f"{name} {number(value)}{unit} / {number(threshold)}"


def decision_of(result: FeatureDrift, alpha: float, blocking: bool = False) -> str:
    """The drift rule's result as a decision with a severity."""
    if result.test == NONE:
        return NOT_COMPARED
    if result.drifted:
        return BLOCKING if blocking else CHANGED
    material = result.effect_value >= result.threshold or result.psi >= result.psi_threshold
    return WATCH if material or result.p_corrected <= alpha else UNCHANGED


def materiality(result: FeatureDrift) -> float:
    """The larger of effect / threshold and PSI / its threshold (>= 1: material)."""
    ratios = [v / t for v, t in ((result.effect_value, result.threshold), (result.psi, result.psi_threshold))
              if t and math.isfinite(v)]
    return max(ratios) if ratios else math.nan


def _p(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.2g}"


def measures_of(result: FeatureDrift) -> tuple[tuple[str, str], ...]:
    if result.test == NONE:
        return (("n reference", number(result.n_ref)), ("n current", number(result.n_cur)))
    return (("test", TEST_NAMES.get(result.test, result.test)), ("p", _p(result.p_value)),
            ("p Holm", _p(result.p_corrected)),
            ("effect", effect_text(result.effect, result.effect_value, result.threshold)),
            ("PSI", f"{number(result.psi)} / {number(result.psi_threshold)}"),
            ("n reference", number(result.n_ref)), ("n current", number(result.n_cur)),
            ("missing", f"{number(result.missing_ref)} / {number(result.missing_cur)}"))


def view(result: FeatureDrift, chart: Chart, alpha: float, blocking: bool = False) -> FeatureView:
    return FeatureView(result.feature, chart, decision_of(result, alpha, blocking), result.reason,
                       measures_of(result), materiality(result),
                       "" if result.test == NONE else effect_text(result.effect, result.effect_value, result.threshold))
