"""Where fairness shows: the model card's table and picture, the run summary's line, the blessing."""
import dataclasses

import numpy as np
import pandas as pd
from matplotlib import image

from components.evaluate import with_fairness
from flywheel import names
from flywheel.evaluation import fairness
from flywheel.params import EvaluateParams
from flywheel.report import model_card
from pipelines import summary

PARAMS = EvaluateParams(slice_features=("group",), slice_crosses=())


def report(unfair: bool, production: bool = False) -> fairness.FairnessReport:
    rng = np.random.default_rng(0)
    groups = np.array(["a"] * 1200 + ["b"] * 1200 + ["tiny"] * 10)
    labels = (rng.random(len(groups)) < 0.5).astype(int)
    scores = rng.normal(0, 1, len(groups)) + 1.5 * labels
    if unfair:
        scores = np.where(groups == "b", rng.normal(0, 1, len(groups)), scores)
    frame = pd.DataFrame({"group": groups})
    return fairness.assess(frame, names.BINARY, labels, {names.OUTPUT_SCORE: scores}, PARAMS,
                           production=(labels, {names.OUTPUT_SCORE: scores + 0.01}) if production else None)


@dataclasses.dataclass
class FakeStep:
    evaluation: dict
    failed_step: str = ""
    error: str = ""

    def metadata(self, step, output):
        return self.evaluation if (step, output) == summary.EVALUATE else {}

    def path(self, step, output):
        return None


def test_card_lists_every_slice_with_its_interval_and_the_failure(tmp_path):
    unfair = report(unfair=True, production=True)
    lines = "\n".join(model_card.fairness_section(unfair.to_dict(), "auc"))
    assert "**FAILED: auc gap" in lines and f"]({names.FAIRNESS_CHART})" in lines
    for s in unfair.slices:
        assert f"| group | {s.slice} | {s.rows} |" in lines
    b = next(s for s in unfair.slices if s.slice == "b")
    assert f"{b.value:.3f} [{b.low:.3f}, {b.high:.3f}]" in lines
    assert f"{b.production:.3f} [{b.production_low:.3f}, {b.production_high:.3f}]" in lines
    assert "| group | tiny | 10 | - | - | too small |" in lines
    assert "**gap** failed on `group` = `b`" in lines


def test_chart_is_a_png_with_one_panel_per_grouping(tmp_path):
    from flywheel.evaluation import fairness_chart
    path = tmp_path / names.FAIRNESS_CHART
    fairness_chart.write_png(report(unfair=True, production=True), str(path))
    picture = image.imread(path)
    assert picture.ndim == 3 and 100 < picture.shape[0] < 2000 and picture.shape[1] > 300
    empty = fairness.FairnessReport("auc", 0.95, [], [], [], ["group"])
    fairness_chart.write_png(empty, str(tmp_path / "empty.png"))
    assert (tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"


def test_blessing_takes_the_fairness_decision():
    fair, unfair = report(unfair=False), report(unfair=True)
    assert with_fairness(True, "auc 0.85 passes", fair) == (True, "auc 0.85 passes")
    blessed, reason = with_fairness(True, "auc 0.85 passes", unfair)
    assert not blessed and reason.startswith("fairness: auc gap") and "group=b" in reason
    blessed, reason = with_fairness(False, "auc 0.55 is below the floor 0.6", unfair)
    assert not blessed and reason.startswith("auc 0.55 is below the floor 0.6; fairness: ")


def test_run_summary_prints_one_fairness_line():
    for r in (report(unfair=False), report(unfair=True)):
        step = FakeStep({"blessed": r.passed, "reason": "x", "fairness": r.summary(), "metrics": {"auc": 0.8}})
        text = summary.describe([summary.summarize(step, "data/span-001.csv", "run", 1.0)], [], "repo", "m")
        fairness_lines = [line for line in text.splitlines() if line.strip().startswith("fairness:")]
        assert fairness_lines == [f"  fairness: {r.summary()}"]
        assert ("FAILED: auc gap" in fairness_lines[0]) is (not r.passed)
    assert report(unfair=False).summary().startswith("passed: 2 slices judged, 1 too small, over 1 groupings")
