"""The joint drift check's section of a report (flywheel/drift/joint.py): one card per pair of
features that moved most, with the reference's and the current correlation, the test and the
decision. The validate step's report and the live report both draw it."""
from __future__ import annotations

import math
from typing import Mapping

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
    p = f"p={pair.p_value:.2g}, " if math.isfinite(pair.p_value) else ""
    reason = (f"{verdict}: {text}; {p}Holm over {result.pairs} pairs {pair.p_corrected:.2g} "
              f"(alpha {result.alpha:g}), material at |change| >= {result.min_change:g}")
    measures = (("r reference", f"{pair.r_ref:+.3f}"), ("r current", f"{pair.r_cur:+.3f}"),
                ("change", f"{pair.change:+.3f} / {number(result.min_change)}"), ("z", f"{pair.z:+.2f}"),
                ("p", f"{pair.p_value:.2g}"), ("p Holm", f"{pair.p_corrected:.2g}"),
                ("n reference", number(result.n_ref)), ("n current", number(result.n_cur)))
    measures = tuple((k, v) for k, v in measures if "nan" not in v)
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


def from_measures(overall: Mapping[str, float], pairs: Mapping[str, Mapping[str, float]], alpha: float,
                  min_change: float) -> JointDrift:
    """The joint check as the sidecar exports it (monitoring/metrics.py `joint_measures`): its
    decision and the pairs that moved most, without the per-pair z and raw p (not exported)."""
    top = []
    for label, values in pairs.items():
        a, _, b = label.partition(" ~ ")
        top.append(PairDrift(a, b, values.get("r_ref", math.nan), values.get("r_cur", math.nan), math.nan, math.nan,
                             values.get("p_corrected", math.nan), values.get("drifted", 0.0) >= 1))
    top.sort(key=lambda p: (not p.drifted, -abs(p.change) if math.isfinite(p.change) else 0.0))
    drifted, compared = overall.get("drifted", 0.0) >= 1, overall.get("compared", 0.0) >= 1
    moved = tuple(dict.fromkeys(f.split("=")[0] for p in top if p.drifted for f in (p.a, p.b)))
    if not compared:
        reason = "not compared: the sidecar's window is too small or its baseline has no joint reference"
    elif drifted:
        reason = f"the sidecar decided that {sum(p.drifted for p in top)} of the pairs shown changed; features " \
                 f"{', '.join(moved)}"
    else:
        reason = "the sidecar found no real and material change of any pair"
    return JointDrift(drifted, compared, int(overall.get("pairs", 0)), math.nan, int(overall.get("rows", 0)), alpha,
                      min_change, tuple(top), moved, reason)
