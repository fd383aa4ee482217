"""The live report's joint drift section from what a sidecar exports: the check's result as
metrics (monitoring/metrics.py `joint_measures`), scraped back (pipelines/live_report.py) and drawn
(flywheel/report/joint.py), with the pairs and correlations the check computed."""
import math

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from flywheel import drift
from flywheel.drift import joint
from flywheel.params import DriftParams
from flywheel.report import joint as joint_report
from flywheel.report import live, render
from monitoring import metrics as m
from pipelines import live_report

PARAMS = DriftParams()


def exported(result: joint.JointDrift, model: str = "taxi") -> str:
    """The sidecar's exposition of a joint result, as its state metrics write it."""
    overall, pairs = m.joint_measures(result)

    class Collector:
        def collect(self):
            family = GaugeMetricFamily(m.JOINT_DRIFT, "joint", labels=["model", "measure"])
            for measure, value in overall.items():
                family.add_metric([model, measure], value)
            per_pair = GaugeMetricFamily(m.JOINT_DRIFT_PAIR, "pairs", labels=["model", "pair", "measure"])
            for pair, values in pairs.items():
                for measure, value in values.items():
                    per_pair.add_metric([model, pair, measure], value)
            yield family
            yield per_pair
    registry = CollectorRegistry()
    registry.register(Collector())
    return generate_latest(registry).decode()


def test_the_live_report_draws_the_exported_joint_check(tmp_path):
    rng = np.random.default_rng(9)
    n = 3000
    u = rng.normal(size=n)
    ref = {"x": u, "y": 0.6 * u + 0.8 * rng.normal(size=n), "z": rng.normal(size=n)}
    profiles = drift.profiles_from_values(ref, PARAMS.quantiles)
    reference = joint.joint_profile(ref, profiles, PARAMS)
    u = rng.normal(size=1000)
    cur = {"x": u, "y": -0.6 * u + 0.8 * rng.normal(size=1000), "z": rng.normal(size=1000)}
    result = joint.compare_joint(reference, reference.summarize(cur), PARAMS)
    assert result.drifted

    found = live_report.read_metrics(exported(result), "taxi")
    assert found["joint"]["drifted"] == 1 and found["joint"]["pairs"] == 3 and found["joint"]["rows"] == 1000
    back = joint_report.from_measures(found["joint"], found["joint_pairs"], PARAMS.joint_alpha, PARAMS.joint_min_change)
    assert back.drifted and back.features == ("x", "y") and back.top[0].drifted
    assert (back.top[0].a, back.top[0].b) == ("x", "y")
    assert back.top[0].r_cur == result.top[0].r_cur and math.isnan(back.top[0].p_value)

    page = render.render(live.report("taxi", 1, "http://pod/metrics", profiles, {}, 1000, joint=back))
    section = page[page.index('<section id="joint">'):]
    assert "x ~ y" in section and f"{result.top[0].r_ref:+.3f}" in section and f"{result.top[0].r_cur:+.3f}" in section
    assert "changed" in section and "p=nan" not in section and "nan" not in section.split("</section>")[0]
