"""The HTML reports in a real browser, offline: Debian's headless Chromium opens each page with its
network off, and the tests assert that it asked for nothing but the file itself, threw no error,
and drew every chart (each SVG laid out, each bar of each side in the DOM with a size), and keep a
screenshot (build/test-artifacts/browser/).

The validation report is made the way a user makes it, by `make validate` (pipelines.validate_cli)
on the default data's span 3, which drifts (params.yaml data.shifts), against span 2. Cost: about
40 s for the two validations, about 1 s a page in the browser.
"""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from components import statistics
from flywheel import artifacts, names
from flywheel.drift import profile_from_values
from flywheel.report import build, charts, model, render
from pipelines import validate_cli
from tests.support.browser import assert_offline_and_drawn, assert_picture
from tests.support.spans import LABEL, SETTINGS, span, write_span

CARDS = """Array.from(document.querySelectorAll('article.card')).map(c =>
  [c.id.split('-')[0], c.querySelector('h3').textContent, c.dataset.decision])"""
SUMMARY = "Array.from(document.querySelectorAll('#summary ~ table tbody tr')).map(r => Number(r.cells[0].dataset.sort))"


def validate(tmp: Path, current, previous, name: str) -> tuple[int, str, Path]:
    data = write_span(tmp, current, f"{name}.csv")
    before = write_span(tmp, previous, f"{name}-previous.csv")
    out = tmp / name
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = validate_cli.main([str(data), "--label", LABEL, "--previous", str(before), "--out", str(out)])
    return code, printed.getvalue(), out / "current" / "anomalies"


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """`make validate DATA=span-003.csv PREVIOUS=span-002.csv` on the default data."""
    return validate(tmp_path_factory.mktemp("drifted"), span(3, SETTINGS.data.shifts), span(2), "span-003")


def test_validation_report_of_the_drifted_span(drifted, browser, screenshots):
    code, printed, anomalies = drifted
    report = anomalies / names.REPORT_HTML
    assert code == 0 and f"report (open in a browser, works offline): {report}" in printed
    measured = json.loads((anomalies / names.MEASUREMENTS_FILE).read_text())
    page = browser.open(report)
    drawn = assert_offline_and_drawn(page, report)
    compared = [(kind, r["feature"]) for kind in (names.DRIFT, names.SKEW) for r in measured[kind]]
    assert len(drawn) == len(compared)

    # A card per feature and comparison, with the rule's decision; the summary most severe first.
    cards = page.evaluate(CARDS)
    joint_kinds = (names.JOINT_DRIFT, names.JOINT_SKEW)
    joint_cards = [card for card in cards if card[0] in joint_kinds]
    cards = [card for card in cards if card[0] not in joint_kinds]
    assert sorted((kind, feature) for kind, feature, _ in cards) == sorted(compared)
    # A card per pair the joint check ranks, with its decision.
    pairs = {(kind, f"{p['a']} ~ {p['b']}"): p["drifted"] for kind in joint_kinds
             for p in measured[kind].get("top", [])}
    assert sorted((kind, pair) for kind, pair, _ in joint_cards) == sorted(pairs)
    for kind, pair, decision in joint_cards:
        assert (decision == model.CHANGED) == pairs[(kind, pair)], (kind, pair, decision)
    decided = {(kind, r["feature"]): r["drifted"] for kind in (names.DRIFT, names.SKEW) for r in measured[kind]}
    for kind, feature, decision in cards:
        assert (decision == model.CHANGED) == decided[(kind, feature)], (kind, feature, decision)
    assert {f for k, f, d in cards if d == model.CHANGED} >= {"trip_miles", "payment_type"}  # the shifts
    severities = page.evaluate(SUMMARY)
    assert len(severities) == len(compared) + len(pairs) and severities == sorted(severities, reverse=True)
    verdict = page.evaluate("document.querySelector('.verdict').textContent")
    assert verdict.startswith("Not blocked, but") and "changed" in verdict
    anomalies_shown = page.evaluate("document.querySelectorAll('#anomalies + table tbody tr').length")
    assert anomalies_shown == len(json.loads((anomalies / names.ANOMALY_REPORT).read_text()))

    png = page.screenshot(screenshots / "validation-report-span-003.png")
    assert_picture(png)
    page.close()


def test_blocked_validation_still_writes_its_report(tmp_path, browser, screenshots):
    """A changed type blocks; the report is written before the error and says why, on top."""
    before = span(1, rows=2000)
    current = span(2, rows=2000)
    current = current.assign(fare=current["fare"].round(2).astype(str) + " USD")
    code, printed, anomalies = validate(tmp_path, current, before, "blocked")
    report = anomalies / names.REPORT_HTML
    assert code == 1 and str(report) in printed
    page = browser.open(report)
    assert_offline_and_drawn(page, report)
    assert page.evaluate("document.querySelector('.verdict').textContent").startswith("Blocked: ")
    first = page.evaluate("Array.from(document.querySelector('#anomalies + table tbody tr').cells)"
                          ".map(c => c.textContent)")
    assert first[0] == model.BLOCKING and first[1] == "fare" and first[2] == "schema"
    page.screenshot(screenshots / "validation-report-blocked.png")
    page.close()


def test_statistics_pages_the_default_opens_offline_the_facets_extra_does_not(drifted, browser, tmp_path,
                                                                             screenshots):
    """The statistics step's own page draws every column; TFDV's Facets page (the extra) loads its
    scripts from the internet, and the browser records those requests though the network is off:
    the offline check can fail."""
    run = drifted[2].parent
    pages = {"statistics": tmp_path / names.STATS_HTML, "facets": tmp_path / "facets.html"}
    statistics.run(run / "examples", tmp_path / "statistics", html_path=pages["statistics"],
                   schema_path=run / "schema" / names.SCHEMA_FILE, label=LABEL, facets_path=pages["facets"],
                   source="span-003.csv")
    profiled = json.loads(artifacts.profiles_file(tmp_path / "statistics", names.TRAIN).read_text())["profiles"]
    page = browser.open(pages["statistics"])
    drawn = assert_offline_and_drawn(page, pages["statistics"])
    assert sorted(c["feature"] for c in drawn) == sorted(profiled)
    assert page.evaluate("document.querySelectorAll('.verdict, #summary').length") == 0   # no decision here
    page.screenshot(screenshots / "statistics-span-003.png")
    page.close()

    page = browser.open(pages["facets"])
    outside = [u for u in page.requests if not u.startswith("file://")]
    assert outside and all(u.startswith("https://") for u in outside)
    assert page.evaluate("document.querySelectorAll('svg.chart').length") == 0
    page.close()


def test_names_from_the_data_are_text_not_markup(browser, tmp_path):
    """Column names and levels are the user's: a hostile one is shown as text, never run."""
    hostile = '<img src=x onerror="document.title=\'pwned\'">'
    levels = np.array(["</svg><script>document.title='pwned'</script>", "b", "a"] * 100, dtype=object)
    profile = profile_from_values(levels, 10)
    result = build.RuleComparison(
        "drift", "Drift", "before", "after", [_unchanged(hostile, profile.n)], {hostile: profile}, {hostile: levels},
        alpha=0.05)
    page_file = render.write(build.report(hostile, [("data", hostile)], (), [result]), tmp_path / "hostile.html")
    page = browser.open(page_file)
    assert_offline_and_drawn(page, page_file)
    assert page.evaluate("document.title") == hostile
    assert page.evaluate("document.querySelectorAll('img, script').length") == 1   # the page's own sorting script
    assert hostile in page.evaluate("document.querySelector('article.card h3').textContent")
    page.close()


def _unchanged(feature: str, n: float):
    from flywheel.drift import FeatureDrift
    return FeatureDrift(feature, "categorical", "chi2", 0.0, 1.0, 1.0, "linf", 0.0, 0.05, float("nan"), 0.0, 0.0,
                        0.25, n, int(n), 0.0, 0, False, "no change shown")


def test_every_chart_kind_renders(browser, tmp_path, screenshots):
    """Histogram with tails, point masses, integer codes, ordered levels, many levels, no current side."""
    rng = np.random.default_rng(3)
    reference = {"lognormal": rng.lognormal(1, 1, 3000), "passengers": rng.integers(1, 5, 3000).astype(float),
                 "area": rng.integers(1, 78, 3000).astype(float),
                 "hour": np.array([str(h) for h in rng.integers(0, 24, 3000)], dtype=object),
                 "company": np.array([f"company {k}" for k in rng.zipf(1.6, 3000) % 40], dtype=object)}
    current = {"lognormal": rng.lognormal(1.3, 1, 2000), "passengers": rng.integers(1, 6, 2000).astype(float),
               "area": rng.integers(1, 90, 2000).astype(float),
               "hour": np.array([str(h) for h in rng.integers(0, 24, 2000)], dtype=object),
               "company": np.array([f"company {k}" for k in rng.zipf(1.4, 2000) % 60], dtype=object)}
    from flywheel import drift
    from flywheel.params import DriftParams
    profiles = {name: profile_from_values(values, 100) for name, values in reference.items()}
    results = drift.compare(profiles, drift.summarize(profiles, current), DriftParams())
    kinds = {name: charts.chart(profiles[name], profiles[name].summarize(current[name])).kind for name in profiles}
    assert kinds == {"lognormal": charts.HISTOGRAM, "passengers": charts.ORDERED, "area": charts.HISTOGRAM,
                     "hour": charts.ORDERED, "company": charts.LEVELS}
    rules = [build.RuleComparison("drift", "Drift", "reference", "current", results, profiles, current, 0.05),
             build.RuleComparison("skew", "Reference only", "reference", "current", results, profiles, {}, 0.01)]
    page_file = render.write(build.report("Chart kinds", [], (), rules), tmp_path / "kinds.html")
    page = browser.open(page_file)
    drawn = assert_offline_and_drawn(page, page_file)
    assert len(drawn) == 2 * len(profiles)
    assert sum(c["tall"] == [c["tall"][0]] for c in drawn) == len(profiles)    # reference-only charts
    page.screenshot(screenshots / "chart-kinds.png")
    page.close()
