"""What the report draws and says, without a browser: the charts' shares against exact counts of the
values, the bins a person reads, decisions and their order, and the page's bounds and safety.
(tests/browser opens the pages in Chromium.)"""
import math
import re

import numpy as np
import pytest

from flywheel import drift
from flywheel.drift import profile_from_values
from flywheel.params import DriftParams
from flywheel.report import build, charts, model, render

RNG = np.random.default_rng(11)


def _sides(chart: charts.Chart) -> tuple[float, float]:
    bars = chart.all_bars
    return sum(b.reference for b in bars), sum(b.current for b in bars if b.current is not None)


def test_histogram_shares_match_the_values_they_count():
    reference, current = RNG.gamma(2.0, 2.0, 5000), RNG.gamma(2.0, 2.0, 3000) * 1.5
    profile = profile_from_values(reference, 100)
    chart = charts.chart(profile, profile.summarize(current))
    assert chart.kind == charts.HISTOGRAM and len(chart.bars) == charts.HISTOGRAM_BINS
    assert _sides(chart) == pytest.approx((1.0, 1.0))
    cuts = np.linspace(chart.low, chart.high, len(chart.bars) + 1)
    for k, bar in enumerate(chart.bars):
        inside = lambda x: np.mean((x > cuts[k]) & (x <= cuts[k + 1]))  # noqa: E731
        # Inside a 1% quantile bin values are taken as evenly spread: off by at most about a bin.
        assert bar.reference == pytest.approx(inside(reference), abs=0.011)
        assert bar.current == pytest.approx(inside(current), abs=0.011)
    above = np.mean(current > chart.high)
    assert chart.over is not None and chart.over.current == pytest.approx(above, abs=1e-9)


def test_a_long_tail_does_not_squash_the_picture():
    values = np.append(RNG.normal(10, 1, 4000), [1e6])
    chart = charts.chart(profile_from_values(values, 100))
    assert chart.high < 20 and chart.over is not None
    assert chart.over.reference == pytest.approx(np.mean(values > chart.high), abs=1e-3)
    assert max(b.reference for b in chart.bars) < 0.2          # spread over the bins, not one bar


def test_discrete_values_get_a_bar_each():
    passengers = RNG.integers(1, 5, 3000).astype(float)
    profile = profile_from_values(passengers, 100)
    chart = charts.chart(profile, profile.summarize(np.array([1, 2, 6, 6], float)))
    assert chart.kind == charts.ORDERED and [b.label for b in chart.bars] == ["1", "2", "3", "4", "other values"]
    assert chart.bars[-1].current == 0.5 and chart.bars[-1].reference == 0
    assert [b.reference for b in chart.bars[:4]] == pytest.approx([np.mean(passengers == v) for v in (1, 2, 3, 4)])


def test_levels_most_weighty_first_the_rest_pooled_new_values_apart():
    reference = np.array([f"level {k}" for k in RNG.zipf(1.5, 4000) % 50], dtype=object)
    current = np.append(reference[:1000], np.array(["brand new"] * 250, dtype=object))
    profile = profile_from_values(reference, 100)
    chart = charts.chart(profile, profile.summarize(current))
    assert chart.kind == charts.LEVELS and len(chart.bars) == charts.MAX_LEVELS + 2
    pooled, unlisted = chart.bars[-2], chart.bars[-1]
    assert re.fullmatch(r"\d+ more levels", pooled.label)
    assert unlisted.current == pytest.approx(250 / 1250) and unlisted.reference == 0
    assert _sides(chart) == pytest.approx((1.0, 1.0))
    weights = [max(b.reference, b.current) for b in chart.bars[:-2]]
    assert weights == sorted(weights, reverse=True)


def test_integer_coded_levels_in_their_order():
    hours = np.array([str(h) for h in RNG.integers(0, 24, 3000)], dtype=object)
    chart = charts.chart(profile_from_values(hours, 100))
    assert chart.kind == charts.ORDERED and [b.label for b in chart.bars] == [str(h) for h in range(24)]


def test_a_current_side_with_no_value_is_not_drawn():
    profile = profile_from_values(RNG.normal(0, 1, 500), 100)
    chart = charts.chart(profile, profile.summarize(np.array(["12 USD", "n/a"], dtype=object)))
    assert not chart.has_current and "No current value to draw (2 missing" in chart.note


def _compared(shift: float):
    names = ["a", "b", "c"]
    reference = {n: RNG.normal(0, 1, 3000) for n in names}
    current = {n: RNG.normal(shift if n == "a" else 0.0, 1, 3000) for n in names}
    current["b"] = current["b"] + 0.06         # real at this size, but below the 0.1 sd threshold
    profiles = {n: profile_from_values(v, 100) for n, v in reference.items()}
    return drift.compare(profiles, drift.summarize(profiles, current), DriftParams()), profiles, current


def test_decisions_and_their_order():
    results, profiles, current = _compared(0.5)
    rule = build.RuleComparison("drift", "Drift", "reference", "current", results, profiles, current, 0.05,
                                blocking=frozenset({"a"}))
    page = build.report("t", [], (), [rule])
    decided = {f.feature: f.decision for f in page.comparisons[0].features}
    assert decided["a"] == model.BLOCKING
    assert decided["b"] == model.WATCH, [r.reason for r in results if r.feature == "b"]
    assert decided["c"] == model.UNCHANGED
    assert [f.feature for _, f in page.ranked()] == ["a", "b", "c"]
    html = render.render(page)
    assert html.index('href="#drift-0"') < html.index('href="#drift-1"') < html.index('href="#drift-2"')
    assert "Blocked" not in html      # blocking is the anomalies' word: none were given
    assert render.CSP in html


def test_page_size_is_bounded_by_the_bins_not_the_data():
    """A feature costs a few kilobytes whatever the number of its levels or rows."""
    def size(n_features: int, levels: int) -> int:
        values = np.array([f"v{k}" for k in RNG.integers(0, levels, 2000)], dtype=object)
        profile = profile_from_values(values, 100)
        summary = profile.summarize(values)
        profiles = {f"f{i}": profile for i in range(n_features)}
        results = drift.compare(profiles, {name: summary for name in profiles}, DriftParams())
        rule = build.RuleComparison("drift", "Drift", "r", "c", results, profiles,
                                    {name: values for name in profiles}, 0.05)
        return len(render.render(build.report("t", [], (), [rule])).encode())
    capped, many_levels = size(20, 500), size(20, 50000)
    assert abs(many_levels - capped) < 0.15 * capped    # pooled beyond the cap (one more bar: unlisted values)
    assert size(200, 50000) < 11 * many_levels and size(200, 50000) / 200 < 8000   # linear, < 8 kB a feature


def test_no_number_reads_as_nonsense():
    assert [charts.number(x) for x in (0, 3959.0, 12345.0, 0.000347, 1.5e9, math.nan, 0.0302)] == \
        ["0", "3959", "12,345", "3.47e-04", "1.50e+09", "–", "0.0302"]
