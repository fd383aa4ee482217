"""The Markdown model card written by evaluate and pushed with every version."""
from __future__ import annotations


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
    lines += [f"| {name} | {kind}{' (categorical)' if name in metadata.get('categorical', []) else ''} |"
              for name, kind in metadata["features"].items()]
    lines += ["", "## Metrics (test split)", "| metric | value |", "|---|---|"]
    lines += [row(k, v) for k, v in result.metrics.items()]
    if result.production_metrics:
        lines += ["", f"Production (v{result.production_version}) on the same rows:", "| metric | value |", "|---|---|"]
        lines += [row(k, v) for k, v in result.production_metrics.items()]
    if result.slices:
        lines += ["", f"## Slices (largest gap in {result.primary_metric}: {result.slice_gap:.4f})",
                  f"| slice | rows | {result.primary_metric} |", "|---|---|---|"]
        lines += [f"| {k} | {v['rows']} | {v.get(result.primary_metric, float('nan')):.4f} |"
                  for k, v in result.slices.items()]
    lines += ["", "## Blessing", f"**{'BLESSED' if result.blessed else 'NOT BLESSED'}**: {result.reason}", ""]
    return "\n".join(lines)
