"""The validate step's HTML report (flywheel/report): anomalies, a summary sorted by severity, and
for every compared feature the reference beside the current values, with the rule's decision.

Drift draws this run's train split against the baseline (the production model's training split,
or a previous file's under `make validate`); skew draws the eval split against the train split.
The current values are counted into the reference profile's bins exactly as the rule counted them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from flywheel import drift, names
from flywheel.params import DriftParams
from flywheel.report import build, joint, model, render

SIDES = {  # kind -> (title, reference side, current side)
    names.DRIFT: ("Drift: this data's train split against the baseline", "baseline (training split of the reference)",
                  "this data's train split"),
    names.SKEW: ("Skew: eval split against train split", "train split", "eval split"),
    names.JOINT_DRIFT: ("Joint drift: how this data's features move together, against the baseline",
                        "baseline (training split of the reference)", "this data's train split"),
    names.JOINT_SKEW: ("Joint skew: how the eval split's features move together, against the train split",
                       "train split", "eval split"),
}


def write(path: str | Path, source: str, baseline: str | None, anomalies: list[dict],
          decisions: dict[str, list[drift.FeatureDrift]], compared: dict[str, tuple[dict, object]],
          times: dict[str, str], params: DriftParams, sides: dict | None = None, title: str = "Validation report",
          facts: list[tuple[str, str]] = (), joints: dict | None = None) -> Path:
    """`compared`: kind -> (reference profiles, current summaries by feature, time parts included:
    components/validate.py `decide`) for the kinds the rule ran; `joints`: joint kind -> the joint
    check's JointDrift; `sides` words them (default SIDES), `facts` are added to the page's header."""
    rules = []
    for kind in (names.DRIFT, names.SKEW):
        if kind not in compared:
            continue
        profiles, summaries = compared[kind]
        title_of, reference, current = (sides or SIDES)[kind]
        rules.append(build.RuleComparison(
            kind, title_of, reference, current, decisions.get(kind, []), profiles, summaries,
            params.alpha if kind == names.DRIFT else params.skew_alpha,
            frozenset(a["feature"] for a in anomalies if a["kind"] == kind and a["blocking"]),
            note=f"Alpha {params.alpha if kind == names.DRIFT else params.skew_alpha:g} (Holm-corrected); "
                 f"material at W1 {params.wasserstein_sd:g} sd, a share moved by {params.linf:g}, or PSI "
                 f"{params.psi:g}." + (" Time columns are compared by their parts." if times else "")))
    header = [("data", source), ("baseline", baseline or "none: no drift comparison (first run)")]
    if names.SKEW not in compared and sides is None:
        header.append(("skew", "not compared (no raw splits)"))
    page = build.report(f"{title}: {Path(source).name or source}", header + list(facts),
                        model.anomalies_from_report(anomalies), rules)
    blocked = {a["kind"] for a in anomalies if a["blocking"]}
    sections = tuple(joint.comparison(kind, *(sides or SIDES).get(kind, SIDES[kind]), result, kind in blocked)
                     for kind, result in (joints or {}).items())
    page = dataclasses.replace(page, comparisons=page.comparisons + sections)
    return render.write(page, path)
