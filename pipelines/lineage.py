"""Where a model version came from: `make lineage [MODEL=] [VERSION=]`.

Reads the lineage record every pushed version carries (assets.extra/run.json, written by the push
step: flywheel/bundle.py) and follows it back through the versions each one was compared with:
for each, the data it trained on (path, md5 = DVC md5, git revision), the code (git revision,
uncommitted changes, image), the settings, the pipeline run, what started it (manual, schedule,
or an alert with its labels and values) and the evaluation against the version before. Prints the
chain for the served version (or VERSION) and draws versions, data spans and triggers to a PNG.
No ML Metadata store is needed: the records live in the model repository.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from flywheel import bundle, names, storage
from pipelines import summary
from flywheel import model_repository as repo
from flywheel import options


def record_of(repository: str, model_name: str, version: int) -> dict:
    """A version's lineage record ({} for a version pushed without one)."""
    path = bundle.path(repo.version_dir(repository, model_name, version), names.RUN_RECORD)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else {}


def chain_of(repository: str, model_name: str, version: int) -> list[tuple[int, dict, dict]]:
    """[(version, metadata, record)] from `version` back through the versions each was compared with."""
    out, seen = [], set()
    current: int | None = version
    while current is not None and current not in seen and current in repo.versions(repository, model_name):
        seen.add(current)
        metadata = bundle.read_metadata(repo.version_dir(repository, model_name, current))
        out.append((current, metadata, record_of(repository, model_name, current)))
        current = metadata.get("compared_with", metadata.get("rolled_back_from"))
    return out


def trigger_text(trigger: dict) -> str:
    kind = trigger.get("kind", "manual")
    if kind == "alert":
        labels = ", ".join(f"{k}={v}" for k, v in sorted((trigger.get("labels") or {}).items()))
        value = f", value {trigger['value']}" if trigger.get("value") is not None else ""
        return f"alert {trigger.get('alert', '?')} ({labels}{value})"
    if kind == "schedule":
        return f"schedule {trigger.get('cron', '')}".strip()
    return f"manual ({trigger.get('command', '').strip() or 'run'} by {trigger.get('by', '?')})"


def describe(version: int, metadata: dict, record: dict, served: int | None) -> list[str]:
    steps = record.get("steps", {})
    data = steps.get("ingest/examples", {})
    evaluation = steps.get("evaluate/evaluation", {})
    code = record.get("code", {})
    lines = [f"v{version}{' (served)' if version == served else ''}: pushed by run {record.get('run_id') or '?'}, "
             f"started by {trigger_text(record.get('trigger', {}))}"]
    if metadata.get("rolled_back_from") is not None:
        lines.append(f"  a copy of v{metadata['rolled_back_from']} (rollback)")
    lines.append(f"  data: {data.get('source') or data.get('data_path') or '?'}  {metadata.get('data_version', '')}"
                 + (f"  git {data['git_rev'][:12]}" if data.get("git_rev") else "")
                 + (f"  DVC {data['dvc_tracked']}" if data.get("dvc_tracked") else ""))
    if code:
        lines.append(f"  code: git {code.get('git_sha', '')[:12] or '?'}{' (uncommitted changes)' if code.get('dirty') else ''}"
                     f"  package {code.get('package', '')}" + (f"  image {code['image']}" if code.get("image") else ""))
    metrics, production = evaluation.get("metrics") or metadata.get("metrics", {}), evaluation.get("production_metrics") or {}
    compared = metadata.get("compared_with")
    shown = " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k != "rows" and isinstance(v, (int, float)))
    lines.append(f"  evaluated: {shown or '-'}" + (
        f"; v{compared} on the same rows: " + " ".join(f"{k}={v:.3f}" for k, v in production.items()
                                                     if k != "rows" and isinstance(v, (int, float)))
        if compared is not None else "; no production model to compare with"))
    selection = steps.get("train/model", {}).get("selection")
    if selection:
        lines.append(f"  model families: {summary.families_text(selection)}")
    for key, label in (("statistics/statistics", "statistics"), ("schema/schema", "schema"),
                       ("validate/anomalies", "anomalies")):
        if steps.get(key, {}).get("uri"):
            lines.append(f"  {label}: {steps[key]['uri']}")
    settings = {k: v for step in ("ingest/examples", "train/model", "evaluate/evaluation")
                for k, v in [(step.split("/")[0], steps.get(step, {}).get("params"))] if v}
    for step, values in settings.items():   # one line a step, so a long section cannot hide the others
        lines.append(f"  settings {step}: " + json.dumps(values, sort_keys=True)[:400])
    return lines


def draw(chain: list[tuple[int, dict, dict]], path: str, model_name: str) -> None:
    """Versions (left to right, oldest first), the data each trained on above, its trigger below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = list(reversed(chain))
    fig, ax = plt.subplots(figsize=(max(6, 3.2 * len(ordered)), 4.2))
    ax.set_xlim(-0.7, len(ordered) - 0.3)
    ax.set_ylim(-1.5, 1.6)
    ax.axis("off")
    box = dict(boxstyle="round,pad=0.4", linewidth=1)
    for i, (version, metadata, record) in enumerate(ordered):
        steps = record.get("steps", {})
        data = steps.get("ingest/examples", {})
        name = os.path.basename(str(data.get("source") or data.get("data_path") or "?"))
        metrics = metadata.get("metrics", {})
        primary = next((f"{k} {metrics[k]:.3f}" for k in ("auc", "accuracy", "rmse") if k in metrics), "")
        ax.text(i, 0, f"v{version}\n{primary}", ha="center", va="center", fontsize=11,
                bbox={**box, "facecolor": "#dbeafe"})
        ax.text(i, 1.05, f"{name}\n{str(metadata.get('data_version', ''))[:16]}", ha="center", va="center", fontsize=8,
                bbox={**box, "facecolor": "#dcfce7"})
        ax.annotate("", xy=(i, 0.25), xytext=(i, 0.8), arrowprops={"arrowstyle": "->"})
        ax.text(i, -1.0, trigger_text(record.get("trigger", {}))[:48], ha="center", va="center", fontsize=8,
                bbox={**box, "facecolor": "#fef3c7"})
        ax.annotate("", xy=(i, -0.25), xytext=(i, -0.78), arrowprops={"arrowstyle": "->"})
        if i:
            ax.annotate("", xy=(i - 0.28, 0), xytext=(i - 0.72, 0),
                        arrowprops={"arrowstyle": "<-", "linestyle": "--"})
    ax.set_title(f"Lineage of {model_name}", fontsize=11)
    fig.text(0.5, 0.02, "green: the data a version trained on; yellow: what started its run; dashed: compared with",
             ha="center", fontsize=8, color="#555")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel lineage", description=__doc__.split("\n")[0])
    options.add_model(parser)
    parser.add_argument("--version", type=int, default=0, help="default: the served (production) version")
    parser.add_argument("--picture", default=os.path.join("runs", "lineage.png"))
    options.add_params(parser)
    args = parser.parse_args(argv)
    repository, model_name = options.model(args, options.load(args))
    served = repo.production_version(repository, model_name)
    version = args.version or served
    if version is None or version not in repo.versions(repository, model_name):
        print(f"error: no version {args.version or ''} of {model_name} in {repository} "
              f"(versions: {repo.versions(repository, model_name) or 'none'}); run `make run` first", file=sys.stderr)
        return 2
    chain = chain_of(repository, model_name, version)
    for v, metadata, record in chain:
        print("\n".join(describe(v, metadata, record, served)))
    draw(chain, args.picture, model_name)
    print(f"picture: {args.picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
