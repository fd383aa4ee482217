"""A report (flywheel/report/model.py) as one self-contained HTML page: inline CSS, inline SVG charts,
a few lines of inline script to sort the summary table, and a Content-Security-Policy that forbids
loading anything, so the page looks the same in an air-gapped cluster, a KFP UI that blocks outside
scripts, or a mail attachment. Every text that comes from data (feature names, levels, reasons) is
escaped.

The page, top to bottom: the verdict and facts; the anomalies (blocking first); the summary table
(one row per feature and comparison, most severe first, links to the feature's card); then per
comparison a card per feature: its decision, the reason, the measures and the chart of the
reference beside the current sample.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

from flywheel.report.charts import HISTOGRAM, LEVELS, Bar, Chart, number
from flywheel.report.model import (
    BLOCKING,
    CHANGED,
    MEASURED,
    NOT_COMPARED,
    PROFILE,
    UNCHANGED,
    WATCH,
    Comparison,
    FeatureView,
    Report,
)

# Forbids every fetch: scripts and styles only inline, images only data: URLs.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
COLOURS = {BLOCKING: "#c62828", CHANGED: "#e65100", WATCH: "#b28704", MEASURED: "#3949ab", UNCHANGED: "#2e7d32",
           NOT_COMPARED: "#757575", PROFILE: "#546e7a"}
REFERENCE_FILL, CURRENT_FILL = "#aab2bd", "#1f63d1"

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;margin:0;
background:#f5f6f8}
main{max-width:1240px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 8px}
.facts{display:flex;flex-wrap:wrap;gap:4px 22px;margin:0;color:#4a5363}.facts div{white-space:nowrap}
.facts dt{display:inline;font-weight:600}.facts dd{display:inline;margin:0 0 0 4px}
.verdict{margin:14px 0 0;padding:10px 14px;border-radius:6px;color:#fff;font-weight:600;font-size:15px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid #e6e9ee;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600;white-space:nowrap}
table.sortable th{cursor:pointer}table.sortable th:hover{background:#e2e6ec}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;color:#fff;font-size:12px;font-weight:600;
white-space:nowrap}
.note{color:#4a5363;margin:0 0 10px}
.legend{display:flex;gap:16px;margin:0 0 10px;font-size:13px;color:#4a5363}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:5px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:14px}
.card{background:#fff;border:1px solid #dde1e7;border-left:5px solid #757575;border-radius:6px;padding:10px 12px}
.card h3{font-size:15px;margin:0 6px 4px 0;display:inline-block;word-break:break-all}
.reason{margin:2px 0 6px;color:#394150;font-size:13px}
.measures{display:flex;flex-wrap:wrap;gap:0 12px;margin:0 0 6px;font-size:12px;color:#4a5363}
.measures b{font-weight:600;color:#1d2330}
svg.chart{display:block;width:100%;height:auto;overflow:visible}
svg text{font:10px system-ui,-apple-system,"DejaVu Sans",sans-serif;fill:#4a5363}
.empty{color:#757575;font-style:italic}
a{color:#174ea6;text-decoration:none}a:hover{text-decoration:underline}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var down = th.dataset.dir !== 'desc'; th.dataset.dir = down ? 'desc' : 'asc';
      rows.sort(function(a, b){
        var x = a.cells[col].dataset.sort || a.cells[col].textContent;
        var y = b.cells[col].dataset.sort || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y), r = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return down ? -r : r;
      });
      rows.forEach(function(row){ body.appendChild(row); });
    });
  });
});
"""

E = html.escape


def _pct(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.0%}" if x >= 0.1 or x == 0 else f"{x:.1%}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _badge(decision: str) -> str:
    return f'<span class="badge" style="background:{COLOURS[decision]}">{E(decision)}</span>'


def _tip(bar: Bar) -> str:
    current = "" if bar.current is None else f", current {_pct(bar.current)}"
    return f"<title>{E(bar.label)}: reference {_pct(bar.reference)}{current}</title>"


# --- charts ----------------------------------------------------------------------------------
WIDTH = 400


def _svg(chart: Chart, feature: str, height: float, body: list[str]) -> str:
    series = "ref cur" if chart.has_current else "ref"
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}" '
            f'role="img" aria-label="{E(feature, quote=True)}" data-bars="{len(chart.all_bars)}" '
            f'data-series="{series}">' + "".join(body) + "</svg>")


def _columns(chart: Chart, feature: str) -> str:
    """Vertical bars: a histogram (the two sides overlaid, tails at the sides) or ordered values
    (the two sides next to each other)."""
    height, left, right, top, bottom = 160.0, 38.0, 8.0, 10.0, 30.0
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    histogram = chart.kind == HISTOGRAM
    slots: list[tuple[Bar, bool]] = ([(chart.under, True)] if chart.under else []) + [(b, False) for b in chart.bars] \
        + ([(chart.over, True)] if chart.over else [])
    gaps = sum(1 for _, tail in slots if tail) * 0.6
    unit = plot_w / max(len(slots) + gaps, 1)
    peak = max([b.reference for b, _ in slots] + [b.current or 0.0 for b, _ in slots] + [1e-9]) * 1.08
    y = lambda share: top + plot_h * (1 - share / peak)  # noqa: E731
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - right}" y2="{top + plot_h}" stroke="#9aa3b0"/>',
            f'<line x1="{left}" y1="{top}" x2="{WIDTH - right}" y2="{top}" stroke="#eceef2"/>',
            f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{_pct(peak / 1.08)}</text>',
            f'<text x="{left - 4}" y="{top + plot_h + 3}" text-anchor="end">0</text>']
    x, positions = left, []
    for k, (bar, tail) in enumerate(slots):
        if tail and k > 0:
            x += unit * 0.6
        positions.append(x)
        sides = [("ref", bar.reference, REFERENCE_FILL)] + \
            ([("cur", bar.current, CURRENT_FILL)] if bar.current is not None else [])
        for s, (cls, share, fill) in enumerate(sides):
            if histogram or len(sides) == 1:
                bx, bw = x + 0.5, max(unit - 1.0, 0.6)
            else:
                bx, bw = x + unit * (0.1 + 0.4 * s), unit * 0.4
            opacity = ' fill-opacity="0.55"' if histogram and cls == "cur" else ""
            top_y = y(share)
            body.append(f'<rect class="bar {cls}" x="{bx:.1f}" y="{top_y:.1f}" width="{bw:.1f}" '
                        f'height="{top + plot_h - top_y:.1f}" fill="{fill}"{opacity}>{_tip(bar)}</rect>')
        x += unit
        if tail and k == 0:
            x += unit * 0.6
    base = top + plot_h + 13
    if histogram:
        main = [p for p, (_, tail) in zip(positions, slots) if not tail]
        if main:
            start, end = main[0], main[-1] + unit
            body += [f'<text x="{start:.1f}" y="{base}" text-anchor="start">{E(number(chart.low))}</text>',
                     f'<text x="{(start + end) / 2:.1f}" y="{base}" text-anchor="middle">'
                     f'{E(number((chart.low + chart.high) / 2))}</text>',
                     f'<text x="{end:.1f}" y="{base}" text-anchor="end">{E(number(chart.high))}</text>']
        for p, (bar, tail) in zip(positions, slots):
            if tail:
                body.append(f'<text x="{p + unit / 2:.1f}" y="{base + 11}" text-anchor="middle">'
                            f'{"&lt;" if bar is chart.under else "&gt;"}</text>')
    else:
        every = max(1, math.ceil(len(slots) / 14))
        for k, (p, (bar, _)) in enumerate(zip(positions, slots)):
            if k % every == 0:
                body.append(f'<text x="{p + unit / 2:.1f}" y="{base}" text-anchor="middle">'
                            f'{E(_short(bar.label, max(3, int(unit * every / 5.5))))}</text>')
    return _svg(chart, feature, height, body)


def _levels(chart: Chart, feature: str) -> str:
    """Horizontal bars, one row per level: the reference above, the current sample below."""
    row, label_w, text_w = 22.0, 130.0, 40.0
    bar_w = WIDTH - label_w - text_w
    height = row * len(chart.bars) + 4
    peak = max([b.reference for b in chart.bars] + [b.current or 0.0 for b in chart.bars] + [1e-9])
    body = []
    for k, bar in enumerate(chart.bars):
        y0 = 2 + k * row
        body.append(f'<text x="{label_w - 6}" y="{y0 + 14:.1f}" text-anchor="end">{E(_short(bar.label, 22))}'
                    f'<title>{E(bar.label)}</title></text>')
        sides = [("ref", bar.reference, REFERENCE_FILL)] + \
            ([("cur", bar.current, CURRENT_FILL)] if bar.current is not None else [])
        thickness = 8.0 if len(sides) == 2 else 14.0
        for s, (cls, share, fill) in enumerate(sides):
            w = max(bar_w * share / peak, 0.0)
            body.append(f'<rect class="bar {cls}" x="{label_w}" y="{y0 + 2 + s * (thickness + 1):.1f}" '
                        f'width="{max(w, 0.6):.1f}" height="{thickness:.0f}" fill="{fill}">{_tip(bar)}</rect>')
        shown = bar.current if bar.current is not None else bar.reference
        far = label_w + bar_w * max(bar.reference, bar.current or 0.0) / peak
        body.append(f'<text x="{far + 4:.1f}" y="{y0 + 14:.1f}">{_pct(shown)}</text>')
    return _svg(chart, feature, height, body)


def chart_svg(chart: Chart, feature: str) -> str:
    if not chart.bars:
        return f'<p class="empty">{E(chart.note or "nothing to draw")}</p>'
    svg = _levels(chart, feature) if chart.kind == LEVELS else _columns(chart, feature)
    note = f'<p class="empty">{E(chart.note)}</p>' if chart.note else ""
    return svg + note


# --- the page --------------------------------------------------------------------------------
def _anchor(comparison: Comparison, index: int) -> str:
    return f"{comparison.key}-{index}"


def _verdict(report: Report) -> tuple[str, str]:
    decisions = [f.decision for c in report.comparisons for f in c.features]
    changed = sum(d in (BLOCKING, CHANGED) for d in decisions)
    if report.blocking:
        return BLOCKING, (f"Blocked: {report.blocking} blocking anomal{'y' if report.blocking == 1 else 'ies'}"
                          + (f"; {changed} feature comparison{'s' if changed != 1 else ''} changed" if changed else ""))
    if changed:
        return CHANGED, f"Not blocked, but {changed} feature comparison{'s' if changed != 1 else ''} changed"
    watch = sum(d == WATCH for d in decisions)
    others = len(report.anomalies)
    if not (watch or others):
        return UNCHANGED, "Nothing changed"
    found = [f"{watch} feature comparison{'s' if watch != 1 else ''} to watch (small, or not confirmed by a test)"] \
        if watch else []
    found += [f"{others} non-blocking anomal{'y' if others == 1 else 'ies'}"] if others else []
    return WATCH, "No decided change; " + ", ".join(found)


def _anomalies(report: Report) -> str:
    if not report.anomalies:
        return '<h2 id="anomalies">Anomalies</h2><p class="note">No anomalies.</p>'
    rows = "".join(
        f"<tr><td>{_badge(BLOCKING) if a.blocking else _badge(WATCH).replace('watch', 'reported')}</td>"
        f"<td>{E(a.feature)}</td><td>{E(a.kind)}</td><td>{E(a.anomaly)}</td><td>{E(a.split)}</td>"
        f"<td>{E(a.description)}</td></tr>" for a in report.anomalies)
    return (f'<h2 id="anomalies">Anomalies ({len(report.anomalies)}, {report.blocking} blocking)</h2>'
            f"<table><thead><tr><th></th><th>feature</th><th>kind</th><th>anomaly</th><th>split</th>"
            f"<th>description</th></tr></thead><tbody>{rows}</tbody></table>")


def _summary(report: Report) -> str:
    anchors = {(c.key, f.feature): _anchor(c, k) for c in report.comparisons for k, f in enumerate(c.features)}
    rows = []
    for comparison, feature in report.ranked():
        measures = dict(feature.measures)
        p = measures.get("p Holm", "–")
        rows.append(
            f'<tr><td data-sort="{feature.severity}">{_badge(feature.decision)}</td><td>{E(comparison.key)}</td>'
            f'<td><a href="#{anchors[(comparison.key, feature.feature)]}">{E(feature.feature)}</a></td>'
            f'<td class="num" data-sort="{feature.materiality if math.isfinite(feature.materiality) else -1}">'
            f'{E(feature.effect or "–")}</td><td class="num">{E(measures.get("PSI", "–"))}</td>'
            f'<td class="num" data-sort="{_sortable(p)}">{E(p)}</td>'
            f'<td class="num">{E(measures.get("n current", "–"))}</td></tr>')
    if not rows:
        return ""
    return ('<h2 id="summary">Summary</h2><p class="note">Every feature compared, the most severe first '
            '(click a column to sort). Effect: the measure that decides against its threshold.</p>'
            '<table class="sortable"><thead><tr><th>decision</th><th>comparison</th><th>feature</th>'
            '<th>effect / threshold</th><th>PSI / threshold</th><th>p (Holm)</th><th>n current</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _sortable(text: str) -> str:
    try:
        return repr(float(text))
    except ValueError:
        return "2"


def _card(comparison: Comparison, index: int, feature: FeatureView) -> str:
    measures = "".join(f"<span>{E(k)} <b>{E(v)}</b></span>" for k, v in feature.measures)
    return (f'<article class="card" id="{_anchor(comparison, index)}" data-decision="{E(feature.decision)}" '
            f'style="border-left-color:{COLOURS[feature.decision]}"><h3>{E(feature.feature)}</h3>'
            f'{_badge(feature.decision)}<p class="reason">{E(feature.reason)}</p>'
            f'<div class="measures">{measures}</div>{chart_svg(feature.chart, feature.feature)}</article>')


def _comparison(comparison: Comparison) -> str:
    order = sorted(range(len(comparison.features)),
                   key=lambda k: (*comparison.features[k].rank, comparison.features[k].feature))
    cards = "".join(_card(comparison, k, comparison.features[k]) for k in order)
    note = f'<p class="note">{E(comparison.note)}</p>' if comparison.note else ""
    current = (f'<span><span class="swatch" style="background:{CURRENT_FILL}"></span>{E(comparison.current)}</span>'
               if any(f.chart.has_current for f in comparison.features) else "")
    legend = (f'<div class="legend"><span><span class="swatch" style="background:{REFERENCE_FILL}"></span>'
              f'{E(comparison.reference)}</span>{current}</div>')
    return (f'<section id="{E(comparison.key)}"><h2>{E(comparison.title)}</h2>{note}{legend}'
            f'<div class="cards">{cards}</div></section>')


def render(report: Report) -> str:
    facts = "".join(f"<div><dt>{E(k)}</dt><dd>{E(v)}</dd></div>" for k, v in report.facts)
    if report.generated:
        facts += f"<div><dt>generated</dt><dd>{E(report.generated)}</dd></div>"
    verdict, decided = "", ""
    if report.decides:
        level, text = _verdict(report)
        verdict = f'<p class="verdict" style="background:{COLOURS[level]}">{E(text)}</p>'
        decided = _anomalies(report) + _summary(report)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{E(report.title)}</title><style>{CSS}</style></head><body><main>"
            f"<header><h1>{E(report.title)}</h1><dl class=\"facts\">{facts}</dl>{verdict}</header>"
            f"{decided}{''.join(_comparison(c) for c in report.comparisons)}"
            f"</main><script>{SORT_SCRIPT}</script></body></html>\n")


def write(report: Report, path: str | Path) -> Path:
    """Render to `path` (written whole: a reader never sees half a page)."""
    from flywheel import storage
    storage.write_text(str(path), render(report))
    return Path(path)
