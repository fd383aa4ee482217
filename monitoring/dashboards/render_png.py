"""Render a Grafana dashboard's time-series panels to one PNG, from Prometheus' query API.

For people without a Grafana server: the same PromQL as the dashboard JSON (variables filled
in), the same thresholds drawn as dashed lines, one subplot per panel.

    python monitoring/dashboards/render_png.py --prometheus http://127.0.0.1:9090 \
        --dashboard monitoring/dashboards/flywheel-drift.json --since 1h \
        --var namespace=flywheel --var model=taxi_tips --out build/dashboards/flywheel-drift.png

The functions are also what tests/cluster uses to run every panel's query against a real
Prometheus, so "the dashboard works" and "the PNG shows it" are checked through one path.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# Grafana's built-in interval variables; a range query here uses `step` for both.
RATE_INTERVAL_MIN_SCRAPES = 4


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    panel_type: str
    expr: str
    legend: str
    instant: bool


def load_dashboard(path: str | Path) -> dict:
    path = Path(path)
    try:
        dashboard = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"{path}: cannot read dashboard JSON: {err}")
    if not isinstance(dashboard.get("panels"), list):
        raise SystemExit(f"{path}: no 'panels' list; is this a Grafana dashboard export?")
    return dashboard


def expand(expr: str, variables: dict[str, str]) -> str:
    """Substitute $name / ${name} like Grafana does; an unknown variable is an error."""
    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"dashboard variable ${name} has no value (pass --var {name}=...)")
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


def panel_queries(dashboard: dict, variables: dict[str, str]) -> list[PanelQuery]:
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append(PanelQuery(panel["title"], panel["type"], expand(target["expr"], variables),
                                      target.get("legendFormat", ""), bool(target.get("instant"))))
    return queries


def _get(prometheus: str, path: str, params: dict) -> list[dict]:
    url = f"{prometheus.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as err:  # Prometheus answers 400/422 with a JSON reason
        raise RuntimeError(f"Prometheus at {prometheus} rejected {params.get('query')!r}: "
                           f"{err.read().decode(errors='replace')}") from err
    except OSError as err:
        raise SystemExit(f"cannot reach Prometheus at {prometheus}: {err}") from err
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query failed: {params.get('query')}: {body}")
    return body["data"]["result"]


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    """[{metric: {labels}, values: [(t, v), ...]}] with float values (NaN kept out)."""
    result = _get(prometheus, "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
    series = []
    for s in result:
        points = [(float(t), float(v)) for t, v in s["values"] if not math.isnan(float(v))]
        series.append({"metric": s["metric"], "values": points})
    return series


def query_instant(prometheus: str, expr: str, at: float) -> list[dict]:
    return [{"metric": s["metric"], "value": float(s["value"][1])}
            for s in _get(prometheus, "/api/v1/query", {"query": expr, "time": at})]


def legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or json.dumps(labels)


def thresholds(panel: dict) -> list[tuple[str, float]]:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    return [(s["color"], s["value"]) for s in steps if s.get("value") is not None]


def render(dashboard: dict, prometheus: str, start: float, end: float, out: Path,
           variables: dict[str, str], step: float | None = None) -> Path:
    """Draw every time-series panel of `dashboard` between start and end into `out` (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = step or max(1.0, (end - start) / 300)
    variables = {"__rate_interval": f"{int(max(step * RATE_INTERVAL_MIN_SCRAPES, 4))}s", **variables}
    panels = [p for p in dashboard["panels"] if p["type"] == "timeseries"]
    if not panels:
        raise SystemExit(f"dashboard {dashboard.get('title')}: no timeseries panels to draw")
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        for target in panel["targets"]:
            for s in query_range(prometheus, expand(target["expr"], variables), start, end, step):
                if s["values"]:
                    t, v = zip(*s["values"])
                    label = legend(target.get("legendFormat", ""), s["metric"])
                    # matplotlib hides legend labels that start with "_" (e.g. feature "__unknown__")
                    ax.plot([x - start for x in t], v, label=" " + label if label.startswith("_") else label)
        for color, value in thresholds(panel):
            ax.axhline(value, color=color, linestyle="--", linewidth=1, label=f"threshold {value:g}")
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.set_xlabel(f"seconds since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(start))}", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.suptitle(dashboard.get("title", ""), fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # leave the suptitle its own line
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out)  # never leave a half-written PNG under the final name
    return out


def _duration_s(text: str) -> float:
    m = re.fullmatch(r"(\d+)([smhd])", text)
    if not m:
        raise SystemExit(f"--since {text!r}: expected a number and s/m/h/d, e.g. 30m")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", default=str(Path(__file__).with_name("flywheel-drift.json")))
    parser.add_argument("--since", default="1h", help="time range ending now, e.g. 30m, 6h")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="dashboard variable (namespace, model)")
    parser.add_argument("--out", default="build/dashboards/flywheel-drift.png")
    args = parser.parse_args(argv)
    variables = {"namespace": "flywheel", "model": "taxi_tips"}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--var {item!r}: expected NAME=VALUE")
        variables[name] = value
    end = time.time()
    out = render(load_dashboard(args.dashboard), args.prometheus, end - _duration_s(args.since), end,
                 Path(args.out), variables)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
