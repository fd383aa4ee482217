"""A data card for every data version: what the data is, in Markdown and self-contained HTML.

Written by the validate step beside its report and pushed with every version (following the Data
Cards Playbook): source and version, time range when a time column exists, rows per split, the
label's distribution, every feature (type, missing share, a short distribution summary), the PII
columns and what was done to them, the anomalies and the drift found against the previous
version, and the known limitations a user writes next to the data (`<file stem>.card.yaml`, or
`datacard.yaml` in the same folder: {"limitations": [...], "description": "..."}, optional).
"""
from __future__ import annotations

import datetime as dt
import html
import math
from pathlib import Path

import yaml
from tensorflow_metadata.proto.v0 import statistics_pb2

from flywheel import storage
from flywheel.evaluation import slice_candidates
from flywheel.params import EvaluateParams
from flywheel.temporal import timeparts

CARD_SUFFIX = ".card.yaml"
FOLDER_CARD = "datacard.yaml"
MAX_LIMITATIONS = 50          # a user's YAML is read, not trusted: bounded


def user_notes(data_path: str) -> dict:
    """The YAML a user keeps next to the data, or {} (a malformed one is reported, not fatal)."""
    if not data_path:
        return {}
    path = Path(data_path)
    for candidate in (str(path.with_name(path.stem + CARD_SUFFIX)), str(path.with_name(FOLDER_CARD))):
        try:
            if not storage.exists(candidate):
                continue
            notes = yaml.safe_load(storage.read_text(candidate)) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            return {"limitations": [f"(the data card notes in {candidate} could not be read: {error})"]}
        if not isinstance(notes, dict):
            return {"limitations": [f"(the data card notes in {candidate} are not a mapping)"]}
        limitations = notes.get("limitations") or []
        limitations = limitations if isinstance(limitations, list) else [limitations]
        return {"source_notes": candidate, "description": str(notes.get("description", ""))[:2000],
                "limitations": [str(x)[:500] for x in limitations[:MAX_LIMITATIONS]]}
    return {}


def _year_fraction_to_date(value: float) -> str:
    year = int(math.floor(value))
    start, end = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    return (start + dt.timedelta(days=(value - year) * (end - start).days)).isoformat()


def _feature_rows(stats, schema_features: dict, label: str) -> list[dict]:
    dataset = stats.datasets[0]
    rows = []
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if feature.HasField("num_stats"):
            num = feature.num_stats
            common = num.common_stats
            summary = f"mean {num.mean:.4g}, sd {num.std_dev:.4g}, min {num.min:.4g}, median {num.median:.4g}, max {num.max:.4g}"
            if num.num_zeros:
                summary += f", zeros {num.num_zeros / max(common.num_non_missing, 1):.0%}"
        elif feature.HasField("string_stats"):
            common = feature.string_stats.common_stats
            present = max(common.num_non_missing, 1)
            top = ", ".join(f"{v.value} {v.frequency / present:.0%}" for v in feature.string_stats.top_values[:3])
            summary = f"{feature.string_stats.unique} distinct; top: {top}"
        else:
            continue
        total = common.num_non_missing + common.num_missing
        spec = schema_features.get(name)
        kind = ("time" if spec is not None and spec.time else
                "categorical" if spec is not None and spec.categorical else
                statistics_pb2.FeatureNameStatistics.Type.Name(feature.type).lower())
        if kind == "time":
            summary = "see the time range"
        role = "label" if name == label else ("input" if spec is not None else "not a model input")
        rows.append({"feature": name, "type": kind, "role": role,
                     "missing": common.num_missing / total if total else 0.0, "summary": summary})
    return rows


def build(ingest: dict, stats_by_split: dict, schema_features: dict, label: str, profiles: dict,
          time_columns: dict, report: list[dict], notes: dict) -> dict:
    """The card's content as plain data (rendered by `markdown` and `html_page`)."""
    train = stats_by_split["train"]
    time_range = {}
    for name in time_columns:
        trend = profiles.get(timeparts.part_column(name, timeparts.TREND))
        if trend is not None and trend.n and math.isfinite(trend.minimum):
            time_range[name] = (_year_fraction_to_date(trend.minimum), _year_fraction_to_date(trend.maximum))
    label_profile = profiles.get(label)
    if label_profile is not None and label_profile.kind == "categorical":
        total = max(label_profile.n, 1)
        label_distribution = {level: count / total for level, count in zip(label_profile.levels, label_profile.counts)}
    elif label_profile is not None:
        label_distribution = {"mean": label_profile.mean, "sd": label_profile.sd,
                              "min": label_profile.minimum, "max": label_profile.maximum}
    else:
        label_distribution = {}
    return {
        "source": ingest.get("source") or ingest.get("data_path", ""), "data_version": ingest.get("data_version", ""),
        "git_rev": ingest.get("git_rev", ""), "dvc": ingest.get("dvc_tracked", ""),
        "rows": {split: int(stats.datasets[0].num_examples) for split, stats in stats_by_split.items()},
        "rows_read": ingest.get("rows_read"), "rows_without_label": ingest.get("rows_without_label") or 0,
        "label": label, "label_distribution": label_distribution, "time_range": time_range,
        "pii": {"columns": ingest.get("pii_removed", []), "mode": ingest.get("pii_mode", "")},
        "features": _feature_rows(train, schema_features, label),
        "anomalies": [a for a in report if a["kind"] in ("schema", "skew", "suspicious")],
        "drift": [a for a in report if a["kind"] == "drift"],
        "description": notes.get("description", ""), "limitations": notes.get("limitations", []),
        "notes_file": notes.get("source_notes", ""),
        "slice_candidates": proposed_slices(profiles, label, stats_by_split),
    }


def proposed_slices(profiles: dict, label: str, stats_by_split: dict, settings: EvaluateParams = EvaluateParams()) -> dict:
    """Columns that could be fairness slices (flywheel/evaluation/slice_candidates.py), from the training
    profiles' level counts scaled to the test split; whether the configured slice columns exist."""
    rows = {split: int(stats.datasets[0].num_examples) for split, stats in stats_by_split.items()}
    scale = rows.get("test", 0) / rows["train"] if rows.get("train") and rows.get("test") else 0.2
    found = []
    for name, profile in profiles.items():
        if name == label or getattr(profile, "kind", "") != "categorical":
            continue
        counts = {level: count * scale for level, count in zip(profile.levels, profile.counts)}
        levels = {str(level).lower() for level in profile.levels}
        kind = "boolean" if levels <= {"true", "false", "0", "1"} else "categorical"
        found.append(slice_candidates.candidate(name, counts, kind, settings.max_slices, settings.min_slice_rows))
    candidates = slice_candidates.ranked([c for c in found if c])
    configured = [f for f in settings.slice_features if f in profiles]
    return {"configured": configured, "candidates": candidates,
            "setting": slice_candidates.setting(candidates) if candidates else ""}


def _label_text(distribution: dict) -> str:
    """Class shares as percentages; a numeric label's mean, sd and range as numbers."""
    numeric = "mean" in distribution
    return ", ".join(f"{k} {v:.4g}" if numeric else f"{k} {v:.1%}" for k, v in distribution.items()) or "-"


def markdown(card: dict) -> str:
    lines = [f"# Data card: {Path(card['source']).name or 'data'}", ""]
    if card["description"]:
        lines += [card["description"], ""]
    lines += ["## Source", f"- file: `{card['source']}`", f"- data version: `{card['data_version']}`"]
    if card["git_rev"]:
        lines.append(f"- git revision: `{card['git_rev']}`")
    if card["dvc"]:
        lines.append(f"- DVC: {card['dvc']}")
    for name, (start, end) in card["time_range"].items():
        lines.append(f"- time range ({name}): {start} to {end}")
    rows = ", ".join(f"{split} {n}" for split, n in card["rows"].items())
    # A span validated without its ingest record (statistics given directly) knows only its split counts.
    read = card["rows_read"] if card["rows_read"] is not None else sum(card["rows"].values())
    lines += [f"- rows: {int(read)} read, {int(card['rows_without_label'])} without a label dropped; {rows}", ""]
    lines += ["## Label", f"`{card['label']}`: {_label_text(card['label_distribution'])}", ""]
    lines += ["## Features", "| feature | type | role | missing | distribution |", "|---|---|---|---|---|"]
    lines += [f"| {f['feature']} | {f['type']} | {f['role']} | {f['missing']:.1%} | {f['summary']} |" for f in card["features"]]
    pii = card["pii"]
    lines += ["", "## Personal data",
              f"Columns {', '.join(pii['columns'])} were {'dropped' if pii['mode'] == 'drop' else 'replaced by salted hashes'} "
              "before anything was written." if pii["columns"] else "No column was declared as personal data.", ""]
    lines += ["## Anomalies", *([f"- {a['feature']} ({a['kind']}, {a['split']}): {a['description']}" for a in card["anomalies"]]
                                or ["None."]), ""]
    lines += ["## Drift against the production model's data",
              *([f"- {a['feature']}: {a['description']}" for a in card["drift"]] or ["None found (or no earlier version)."]), ""]
    lines += _slice_lines(card.get("slice_candidates") or {})
    lines += ["## Known limitations",
              *([f"- {x}" for x in card["limitations"]] or
                [f"None written down (add `limitations:` to a `{CARD_SUFFIX}` file next to the data)."]), ""]
    return "\n".join(lines)


def _slice_lines(proposal: dict) -> list[str]:
    """The card's section on fairness slices: the configured ones found, or the candidates."""
    if proposal.get("configured"):
        return ["## Fairness slices", f"Sliced on {', '.join(proposal['configured'])} (evaluate.slice_features).", ""]
    if not proposal.get("candidates"):
        return ["## Fairness slices", "None of evaluate.slice_features is in the data, and no column makes groups "
                "large enough to judge: fairness is not assessed.", ""]
    return ["## Fairness slices",
            "None of evaluate.slice_features is in the data, so fairness is not assessed. Columns that could be "
            "slices:", *[f"- `{c['column']}`: {c['why']}" for c in proposal["candidates"]],
            f"Slice on them with `SET='{proposal['setting']}'`; to keep a sensitive one out of the model's inputs "
            "as well, add `schema.sensitive_features=[\"<column>\"]`.", ""]


def html_page(card: dict) -> str:
    """The same card as one self-contained HTML page (inline CSS, nothing fetched)."""
    e = html.escape
    features = "".join(f"<tr><td>{e(f['feature'])}</td><td>{e(f['type'])}</td><td>{e(f['role'])}</td>"
                       f"<td>{f['missing']:.1%}</td><td>{e(f['summary'])}</td></tr>" for f in card["features"])
    items = lambda xs: "".join(f"<li>{e(x)}</li>" for x in xs) or "<li>None.</li>"  # noqa: E731
    label = e(_label_text(card["label_distribution"]))
    times = "".join(f"<li>time range ({e(n)}): {e(a)} to {e(b)}</li>" for n, (a, b) in card["time_range"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Data card</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}}th{{background:#f4f4f4}}
</style></head><body><h1>Data card: {e(Path(card['source']).name)}</h1><p>{e(card['description'])}</p>
<h2>Source</h2><ul><li>file: <code>{e(card['source'])}</code></li><li>data version: <code>{e(card['data_version'])}</code></li>
{times}<li>rows: {e(str(card['rows_read']))} read; {e(', '.join(f'{k} {v}' for k, v in card['rows'].items()))}</li></ul>
<h2>Label</h2><p><code>{e(card['label'])}</code>: {label}</p>
<h2>Features</h2><table><tr><th>feature</th><th>type</th><th>role</th><th>missing</th><th>distribution</th></tr>{features}</table>
<h2>Personal data</h2><p>{e(', '.join(card['pii']['columns']) or 'none declared')} ({e(card['pii']['mode'])})</p>
<h2>Anomalies</h2><ul>{items(f"{a['feature']} ({a['kind']}): {a['description']}" for a in card['anomalies'])}</ul>
<h2>Drift against the production model's data</h2><ul>{items(f"{a['feature']}: {a['description']}" for a in card['drift'])}</ul>
<h2>Known limitations</h2><ul>{items(card['limitations'])}</ul></body></html>
"""
