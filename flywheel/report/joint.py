"""The joint drift check's section of a report (flywheel/drift/joint.py): one card per pair of
features that moved most, with the reference's and the current correlation, the test and the
decision. The validate step's report and the live report both draw it."""
from __future__ import annotations

from flywheel.drift.joint import JointDrift, PairDrift
from flywheel.report import charts
from flywheel.report.charts import number
from flywheel.report.model import BLOCKING, CHANGED, NOT_COMPARED, UNCHANGED, WATCH, Comparison, FeatureView


def _decision(pair: PairDrift, result: JointDrift, blocking: bool) -> str:
    if pair.drifted:
        return BLOCKING if blocking else CHANGED
    material = abs(pair.change) >= result.min_change
    return WATCH if material or pair.p_corrected <= result.alpha else UNCHANGED


def _card(pair: PairDrift, result: JointDrift, blocking: bool) -> FeatureView:
    text = f"correlation {pair.r_ref:+.2f} -> {pair.r_cur:+.2f} (change {pair.change:+.2f})"
    chart = charts.Chart(charts.LEVELS, (), note=text)
    decision = _decision(pair, result, blocking)
    verdict = {CHANGED: "changed", BLOCKING: "changed", WATCH: "small or unconfirmed change",
               UNCHANGED: "no change shown"}[decision]
    reason = (f"{verdict}: {text}; p={pair.p_value:.2g}, Holm over {result.pairs} pairs {pair.p_corrected:.2g} "
              f"(alpha {result.alpha:g}), material at |change| >= {result.min_change:g}")
    measures = (("r reference", f"{pair.r_ref:+.3f}"), ("r current", f"{pair.r_cur:+.3f}"),
                ("change", f"{pair.change:+.3f} / {number(result.min_change)}"), ("z", f"{pair.z:+.2f}"),
                ("p", f"{pair.p_value:.2g}"), ("p Holm", f"{pair.p_corrected:.2g}"),
                ("n reference", number(result.n_ref)), ("n current", number(result.n_cur)))
    return FeatureView(f"{pair.a} ~ {pair.b}", chart, decision, reason, measures,
                       abs(pair.change) / result.min_change if result.min_change else abs(pair.change),
                       f"|change| {abs(pair.change):.2f} / {number(result.min_change)}")


def comparison(key: str, title: str, reference: str, current: str, result: JointDrift,
               blocking: bool = False) -> Comparison:
    """The pairs that moved most as cards; a check that did not run is one card saying why."""
    note = (f"Correlations of normal scores between every pair of features ({result.pairs} pairs): Holm at "
            f"{result.alpha:g} and a change of at least {result.min_change:g}. {result.reason}.")
    if not result.compared:
        empty = FeatureView("all pairs", charts.Chart(charts.LEVELS, (), note=result.reason), NOT_COMPARED,
                            result.reason, (("n reference", number(result.n_ref)), ("n current", number(result.n_cur))))
        return Comparison(key, title, reference, current, (empty,), note)
    return Comparison(key, title, reference, current, tuple(_card(p, result, blocking) for p in result.top), note)
