"""The Markdown model card written by evaluate and pushed with every version."""
from __future__ import annotations

from flywheel import names


def render(model_name: str, metadata: dict, result, data_version: str) -> str:
    """Purpose, data, features, metrics, slices and the blessing decision. `result` is
    components.evaluate.Evaluation (task, metrics, slices, production figures, blessing)."""
    def row(name, value):
        return f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |"

    lines = [f"# Model card: {model_name or 'model'}", "",
             "## Purpose",
             f"Predicts `{metadata['label']}` ({metadata['task']}) from raw features; trained and pushed by the "
             "Flywheel pipeline and served by TF Serving behind the monitoring sidecar.", "",
             "## Data", f"- data version: `{data_version or metadata.get('data_version') or 'unknown'}`",
             f"- test rows: {result.test_rows}", "",
             "## Features", "| feature | type |", "|---|---|"]
    times = metadata.get("time_formats", {})
    lines += [f"| {name} | {kind}{' (categorical)' if name in metadata.get('categorical', []) else ''}"
              f"{f' (time: {times[name]})' if name in times else ''} |"
              for name, kind in metadata["features"].items()]
    fit = metadata.get("fit")
    if fit:
        lines += ["", f"Trained for {fit['epochs_run']} of at most {fit['max_epochs']} epochs in batches of "
                      f"{fit['batch_size']} (sized to the train split; early stopping on the eval split's loss)."]
    lines += selection_section(metadata.get("selection"))
    lines += ["", "## Metrics (test split)", "| metric | value |", "|---|---|"]
    lines += [row(k, v) for k, v in result.metrics.items()]
    if result.production_metrics:
        lines += ["", f"Production (v{result.production_version}) on the same rows:", "| metric | value |", "|---|---|"]
        lines += [row(k, v) for k, v in result.production_metrics.items()]
    simple = getattr(result, "baselines", None)
    if simple:
        lines += ["", f"Simple baselines trained on the same train split ({simple['metric']}, test split):",
                  "| model | value |", "|---|---|", row("candidate", result.metrics[simple["metric"]])]
        lines += [row(name, value) for name, value in simple.items() if name != "metric"]
    lines += fairness_section(result.fairness, result.primary_metric)
    estimation = getattr(result, "performance_estimation", None)
    if estimation:
        check = estimation["check"]
        lines += ["", "## Performance estimation without labels (CBPE)",
                  f"{'Trusted' if check['trustworthy'] else 'Not trusted'}: {check['reason']}."]
    lines += ["", "## Blessing", f"**{'BLESSED' if result.blessed else 'NOT BLESSED'}**: {result.reason}", ""]
    return "\n".join(lines)


def selection_section(selection: dict | None) -> list[str]:
    """The model families train tried: each one's eval score and training time, and the one chosen."""
    if not selection:
        return []
    lines = ["", "## Model family (chosen on the eval split)",
             f"**{selection['family']}** ({selection['rule']} rule): {selection['reason']}.", "",
             f"| family | eval {selection['metric']} | training s | note |", "|---|---|---|---|"]
    for family, c in selection["candidates"].items():
        score = f"{c['eval_score']:.4f}" if c.get("eval_score") is not None else "-"
        lines.append(f"| {family} | {score} | {c['seconds']:.1f} | {c['status'] if c['status'] != 'trained' else ''}"
                     f"{': ' if c['status'] != 'trained' and c['note'] else ''}{c['note']} |")
    return lines


def _interval(value, low, high) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{value:.3f}"


def fairness_section(report: dict, metric: str) -> list[str]:
    """The fairness table (every slice: rows, candidate and production with intervals, status) and
    the picture evaluate draws beside the card; `report` is fairness.FairnessReport.to_dict()."""
    if not report or not report.get("slices"):
        lines = ["", "## Fairness", report.get("summary", "no slices") if report else "no slices"]
        return lines + [""] * bool(report and report.get("candidates")) + [
            f"- `{c['column']}`: {c['why']}" for c in (report or {}).get("candidates", [])]
    level = f"{report['confidence']:.0%}"
    lines = ["", "## Fairness",
             f"**{report['summary']}**", "",
             f"Each slice's {metric} on the test rows with its {level} bootstrap interval, production's on the "
             "same rows beside it. Each slice is compared with the other slices of its feature, the floor and production; "
             f"a comparison refuses when it is larger than allowed and significant after Holm's correction over "
             f"all of them (at most {1 - report['confidence']:.0%} chance of refusing a fair model). "
             "Slices too small to judge are listed, not judged.", "",
             f"![{metric} per slice with intervals]({names.FAIRNESS_CHART})"]
    if report["failures"]:
        lines.append("")
    for failure in report["failures"]:
        lines.append(f"- **{failure['criterion']}** failed on `{failure['grouping']}` = `{failure['slice']}`: "
                     f"{failure['message']}")
    gaps = {g["grouping"]: g for g in report["gaps"]}
    lines += ["",
              f"| feature | slice | rows | {metric} | production | status |", "|---|---|---|---|---|---|"]
    failed = {(f["grouping"], f["slice"]) for f in report["failures"]}
    for s in report["slices"]:
        status = "FAILED" if (s["grouping"], s["slice"]) in failed else s["status"]
        lines.append(f"| {s['grouping']} | {s['slice']} | {s['rows']} | {_interval(s['value'], s['low'], s['high'])} | "
                     f"{_interval(s['production'], s['production_low'], s['production_high'])} | {status} |")
    lines += ["", "| feature | largest gap | slice most worse than the others | adjusted p |", "|---|---|---|---|"]
    lines += [f"| {g} | {v['largest']:.3f} | "
              + (f"{v['worst_slice']} by {v['worst']:.3f} | {v['worst_adjusted']:.3g} |" if v.get("worst_slice")
                 else "- | - |")
              for g, v in gaps.items()]
    rates = [c for c in report.get("comparisons", []) if c["criterion"] == "gap" and c["measure"] != "primary"]
    if rates:
        lines += ["", "| feature | slice | measure | value | other slices | worse by (interval) | adjusted p | gates |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {c['grouping']} | {c['slice']} | {c['measure']} | {c['value']:.3f} | {c['reference']:.3f} | "
                  f"{c['worse_by']:.3f} [{c['low']:.3f}, {c['high']:.3f}] | "
                  f"{'-' if c['adjusted'] is None else format(c['adjusted'], '.3g')} | {'yes' if c['gates'] else 'no'} |"
                  for c in rates]

    if report.get("absent"):
        lines.append(f"\nNot in the data, not sliced: {', '.join(report['absent'])}")
    return lines


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def infra_validation_section(validation: dict) -> str:
    """The card's section on infra validation (components/infra_validate.py), appended by that step."""
    latency = validation.get("latency") or {}
    lines = ["## Infra validation",
             f"**{'PASSED' if validation['passed'] else 'FAILED'}**: {validation['reason']}", "",
             "| measure | value |", "|---|---|",
             f"| model server | {validation.get('server', '-')} |",
             f"| load time | {validation.get('load_seconds', float('nan')):.2f} s |",
             f"| rows compared | {validation.get('rows_compared', 0)} |",
             f"| largest score difference | {_number(validation.get('max_abs_difference'), '.2e')} |"]
    if latency:
        lines += [f"| latency p50 / p99 | {latency['p50_ms']:.2f} / {latency['p99_ms']:.2f} ms "
                  f"({latency['requests']} one-row requests at {latency['rate_rps']:.0f}/s) |"]
    production = validation.get("production_latency")
    if production:
        lines += [f"| production, same run | {production['p50_ms']:.2f} / {production['p99_ms']:.2f} ms |"]
    machine = validation.get("machine")
    if machine and machine.get("other_cores") is not None:
        lines += [f"| other work on the machine | {machine['other_cores']:.1f} of {machine['cores']} cores |"]
    return "\n".join(lines) + "\n"
