"""Batch scoring (offline predictions): a table scored with a pushed version, with the checks of a
served request and the report of validate.

One pass over the input in record batches (the streaming ingest's readers: CSV or Parquet, a file,
a directory of shards, a glob, a DVC path at a revision), so memory is a few batches whatever the
input's size. Per batch:
- the rows that cannot be scored as the model was trained are found (components/batch_rows.py),
  listed (up to batch.max_listed_bad_rows) and left out;
- the other rows are counted into TFDV statistics (for the anomalies of the version's schema,
  SERVING environment) and into the drift rule's summaries against the version's training
  profiles (components/validate.py `decide`, the rule of the pipeline and the sidecar);
- they are scored with the version's SavedModel through `serving_default`, the call TF Serving
  makes (components/model_inputs.py), and appended to Parquet shards of predictions: key, row,
  model, version and one column per output; with batch.key_column, each row's answer as TF
  Serving's REST API would give it also goes into a SQLite index for the sidecar's lookup.
At the end: the anomalies and drift report (report.json, measurements.json, report.html,
anomalies.pbtxt), bad_rows.parquet, summary.json and the lineage record run.json.

Everything is written into a staging directory renamed into place at the end, so bad input
(a missing file or column, too many bad rows, drift with batch.block_on_drift) leaves nothing.
"""

import json
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from kfp import dsl

from components import batch_rows, streaming_ingest, streaming_statistics, validate, validation_report
from components import model_inputs, tables
from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import bundle, data_version, names, provenance, schema_view
from flywheel.errors import DataError
from flywheel.params import ROOT, BatchParams, DriftParams, section_dict

BATCH_SPLIT = "batch"
SIDES = {names.DRIFT: ("Drift: this batch against the version's training data",
                       "training split of the scored version", "this batch (rows scored)")}
BAD_ROW_COLUMNS = ("row", "key", "column", "value", "reason")


class Index:
    """key -> the row's answer in TF Serving's REST row format (JSON text), in SQLite: the sidecar
    looks keys up in it without loading it (monitoring/lookup.py). A key seen twice keeps its
    first answer; the repeats are counted."""

    def __init__(self, path: Path):
        self.connection = sqlite3.connect(str(path))
        self.connection.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL) WITHOUT ROWID;"
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);")
        self.rows = self.duplicates = 0

    def add(self, keys: list[str], answers: list[str]) -> None:
        before = self.connection.total_changes
        self.connection.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?)", zip(keys, answers))
        added = self.connection.total_changes - before
        self.rows += added
        self.duplicates += len(keys) - added

    def close(self, meta: dict) -> None:
        self.connection.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        self.connection.commit()
        self.connection.close()


def answers(outputs: dict[str, np.ndarray]) -> list[str]:
    """Each row's outputs as TF Serving's REST API answers a row-format request: the bare value
    when the signature has one output, else an object by output name (devserver/rest_api.py)."""
    if len(outputs) == 1 and next(iter(outputs.values())).ndim == 1 and len(next(iter(outputs.values()))):
        # One scalar per row: one dumps of the whole list, cut at its separators (a per-row dumps
        # costs more than the model's forward pass).
        return json.dumps(next(iter(outputs.values())).tolist())[1:-1].split(", ")
    lists = {k: v.tolist() for k, v in outputs.items()}
    if len(lists) == 1:
        return [json.dumps(v) for v in next(iter(lists.values()))]
    return [json.dumps(dict(zip(lists, row))) for row in zip(*lists.values())]


def output_columns(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs as Parquet columns: one value per row as a scalar, several as a list."""
    out = {}
    for name, values in outputs.items():
        values = values.reshape(len(values), -1)
        out[name] = values[:, 0] if values.shape[1] == 1 else list(values)
    return out


def _features(schema, metadata: dict) -> list[schema_view.Feature]:
    """The model's inputs, with the schema's SERVING domains where the schema has the feature."""
    serving = schema_view.by_name(schema, names.ENV_SERVING)
    return [serving.get(f.name, f) for f in model_inputs.model_features(metadata)]


def _check_columns(source: streaming_ingest.Input, columns: list[str], features, key_column: str) -> None:
    for name in [f.name for f in features] + ([key_column] if key_column else []):
        if name not in columns:
            what = "the key column (batch.key_column)" if name == key_column else "a feature the model takes"
            raise DataError(source.source, f"{what} is not in the input (its columns: {columns})", column=name)


def _typed_for_statistics(frame, features):
    """The scored rows' features as a record batch in the schema's types (text that parsed as
    numbers becomes numbers; integers keep their type across gaps)."""
    import pyarrow as pa
    columns = {}
    for f in features:
        column = frame[f.name]
        if f.kind == schema_view.INT:
            column = batch_rows.numeric(column).round().astype("Int64")
        elif f.kind == schema_view.FLOAT:
            column = batch_rows.numeric(column).astype("float64")
        else:
            column = column.astype("string")
        columns[f.name] = column
    return pa.RecordBatch.from_pandas(pd.DataFrame(columns), preserve_index=False)


class _Pass:
    """The one pass over the input: what it counted and wrote so far."""

    def __init__(self, staging: Path, model: str, version: int, params: BatchParams, schema, quantiles: int):
        self.staging, self.model, self.version, self.params = staging, model, version, params
        self.rows = self.scored = 0
        self.problems: list[tuple] = []
        self.reasons: dict[str, int] = {}
        self.bad = 0
        self.writer = None
        self.index = Index(staging / names.LOOKUP_INDEX) if params.key_column else None
        self.statistics = streaming_statistics.Accumulator(schema, quantiles)
        self.part_names: set[str] = set()
        self.outputs: list[str] = []

    def note_bad(self, frame, mask, problems, keys) -> None:
        self.bad += int(mask.sum())
        room = self.params.max_listed_bad_rows - len(self.problems)
        for position, column, reason in problems:
            self.reasons[f"{column}: {reason}"] = self.reasons.get(f"{column}: {reason}", 0) + 1
            if room > 0:
                value, key = frame[column].iloc[position], None if keys is None else keys.iloc[position]
                self.problems.append((self.rows + position, None if pd.isna(key) else str(key), column,
                                      None if pd.isna(value) else str(value)[:200], reason))
                room -= 1

    def write(self, keys: list[str], rows: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        import pyarrow as pa
        columns = {names.KEY_COLUMN: pa.array(keys, pa.string()), names.ROW_COLUMN: pa.array(rows, pa.int64()),
                   names.MODEL_COLUMN: pa.array([self.model] * len(keys), pa.string()),
                   names.VERSION_COLUMN: pa.array(np.full(len(keys), self.version), pa.int64()),
                   **{k: pa.array(v) for k, v in output_columns(outputs).items()}}
        table = pa.RecordBatch.from_pydict(columns)
        if self.writer is None:
            self.outputs = list(outputs)
            self.writer = streaming_ingest.ShardWriter(self.staging / names.BATCH_PREDICTIONS_DIR, table.schema,
                                                       self.params.shard_rows)
        self.writer.write(table)
        if self.index is not None:
            self.index.add(keys, answers(outputs))


def _sliced(batches: Iterator, rows: int) -> Iterator:
    """Record batches of at most `rows` rows (the CSV reader's blocks are sized in bytes)."""
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _scored(batches: Iterator, state: _Pass, features, required: set[str], scorer: Callable, times: dict,
            progress: Callable[[int], None]) -> Iterator:
    """Check, count and score each batch; yields the scored rows' features for the drift rule
    (`decide` summarises what it is given, so the pass happens once)."""
    import pyarrow as pa
    key_column = state.params.key_column
    wanted = [f.name for f in features] + ([key_column] if key_column and key_column not in
                                           {f.name for f in features} else [])
    for batch in _sliced(batches, state.params.batch_rows):
        frame = pa.RecordBatch.from_arrays([batch.column(batch.schema.get_field_index(n)) for n in wanted],
                                           wanted).to_pandas()
        keys = batch_rows.keys_of(frame[key_column]) if key_column else None
        mask, problems = batch_rows.check(frame, features, required, key_column)
        if mask.any():
            state.note_bad(frame, mask, problems, keys)
        good = frame[~mask]
        rows = np.flatnonzero(~mask) + state.rows
        state.rows += len(frame)
        if len(good):
            typed = _typed_for_statistics(good, features)
            with_parts = streaming_statistics.with_time_parts(typed, times)
            state.part_names.update(with_parts.schema.names[typed.num_columns:])
            state.statistics.add(with_parts)
            row_keys = keys[~mask].tolist() if keys is not None else [str(r) for r in rows]
            state.write(row_keys, rows, scorer(good))
            state.scored += len(good)
            yield typed
        progress(state.rows)


def run(data_path: str, version_dir: str, output_dir: str | Path, model_name: str, version: int,
        params: BatchParams = BatchParams(), drift_params: DriftParams = DriftParams(), data_rev: str = "",
        dvc_repo: str | Path = ROOT, run_id: str = "", trigger: dict | None = None,
        progress: Callable[[int], None] = lambda rows: None) -> dict:
    """Score `data_path` with the version in `version_dir` into `output_dir`; returns the summary.
    DataError (nothing written) for a missing file or column, an empty input, bad rows above
    batch.max_bad_share, or drift when batch.block_on_drift."""
    import tensorflow_data_validation as tfdv

    started, scored_at = time.perf_counter(), time.time()
    source = streaming_ingest.Input(data_path, data_rev, dvc_repo)
    found = bundle.load(version_dir)
    schema, metadata = found.schema, found.metadata
    features = _features(schema, metadata)
    types, md5s, block = streaming_ingest.scan(source, params.batch_rows)
    _check_columns(source, types.columns, features, params.key_column)
    if types.rows == 0:
        raise DataError(source.source, "the input has no rows")
    times = {f.name: f.time_format for f in features if f.time}
    reference = validate.reference_profiles(bundle.path(version_dir, names.BASELINE_STATS))
    scorer = model_inputs.Scorer(version_dir)

    with atomic_dir(output_dir) as staging:
        state = _Pass(staging, model_name, version, params, schema, drift_params.quantiles)
        batches = streaming_ingest.batches(source, types, params.batch_rows, block)
        profiles, summaries, decisions = validate.decide(
            names.DRIFT, reference, _scored(batches, state, features, batch_rows.required(schema), scorer, times,
                                            progress), {f.name for f in features}, times, drift_params)
        bad_share = state.bad / max(state.rows, 1)
        if bad_share > params.max_bad_share:
            worst = max(state.reasons.items(), key=lambda item: item[1])
            row = state.problems[0]
            raise DataError(source.source, f"{state.bad} of {state.rows} rows ({bad_share:.1%}) cannot be scored, "
                            f"more than batch.max_bad_share ({params.max_bad_share:.1%}); the most frequent problem "
                            f"is '{worst[0]}' ({worst[1]} rows); the first is row {row[0]}, value {row[3]!r}: {row[4]}",
                            column=row[2], hint="Fix the rows, or raise batch.max_bad_share to score the others.")
        if state.scored == 0:
            raise DataError(source.source, "no row could be scored")

        stats = streaming_statistics.without_features(state.statistics.result(BATCH_SPLIT), state.part_names)
        anomalies = tfdv.validate_statistics(stats, schema, environment=names.ENV_SERVING)
        report = [{**a, "blocking": False} for a in validate.schema_anomalies(anomalies, BATCH_SPLIT)]
        report += validate.rule_anomalies(names.DRIFT, decisions, params.block_on_drift, split=BATCH_SPLIT,
                                          what_moved="the batch differs from the version's training split")
        report += [{"split": BATCH_SPLIT, "feature": reason.split(": ")[0], "kind": "bad_rows", "anomaly": "bad_rows",
                    "description": f"{count} rows not scored: {reason}", "value": count, "threshold": None,
                    "blocking": False} for reason, count in sorted(state.reasons.items())]
        drifted = sorted({r.feature for r in decisions if r.drifted})
        if params.block_on_drift and drifted:
            raise DataError(source.source, f"drift against version {version}'s training data in {drifted} "
                            "(batch.block_on_drift)", column=drifted[0])

        shards = state.writer.close(staging, names.BATCH_PREDICTIONS_DIR) if state.writer else 0
        _write_bad_rows(staging / names.BAD_ROWS_FILE, state.problems)
        described = data_version.describe_md5(str(source.data_path), tables.combined_md5(md5s), data_rev, dvc_repo,
                                              several=len(md5s) > 1)
        seconds = time.perf_counter() - started
        summary = {
            "model": model_name, "version": version, "version_dir": str(version_dir), "source": source.source,
            "data_version": described.get("data_version", ""), "rows_read": state.rows, "rows_scored": state.scored,
            "bad_rows": state.bad, "bad_share": round(bad_share, 6), "bad_reasons": state.reasons,
            "key_column": params.key_column, "lookup_keys": state.index.rows if state.index else 0,
            "duplicate_keys": state.index.duplicates if state.index else 0, "outputs": state.outputs,
            "shards": shards, "drifted": drifted,
            "schema_anomalies": sum(1 for a in report if a["kind"] == validate.SCHEMA),
            "scored_at": scored_at, "seconds": round(seconds, 3), "rows_per_s": round(state.rows / seconds, 1),
            "run_id": run_id, "output": str(output_dir)}
        if state.index is not None:
            state.index.close({"model": model_name, "version": version, "scored_at": scored_at,
                               "key_column": params.key_column, "run_id": run_id})
        baseline = bundle.path(version_dir, names.BASELINE_STATS)
        tfdv.write_anomalies_text(anomalies, str(staging / names.ANOMALIES_FILE))
        (staging / names.ANOMALY_REPORT).write_text(json.dumps(report, indent=2, default=validate._json) + "\n")
        (staging / names.MEASUREMENTS_FILE).write_text(json.dumps(
            {"baseline": baseline, "time_columns": times, names.DRIFT: [r.as_dict() for r in decisions]},
            indent=2, default=validate._json) + "\n")
        validation_report.write(staging / names.REPORT_HTML, source.source, baseline, report,
                                {names.DRIFT: decisions}, {names.DRIFT: (profiles, summaries)}, times, drift_params,
                                sides=SIDES, title="Batch scoring report",
                                facts=[("model", f"{model_name} version {version}"),
                                       ("rows", f"{state.scored} scored of {state.rows}; {state.bad} bad")])
        (staging / names.BATCH_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        (staging / names.RUN_RECORD).write_text(json.dumps(lineage(
            summary, described, metadata, params, drift_params, trigger), indent=2, default=str) + "\n")
    return summary


def lineage(summary: dict, data: dict, metadata: dict, params: BatchParams, drift_params: DriftParams,
            trigger: dict | None) -> dict:
    """The run's record: the data it scored, the version that scored it (and the data that version
    trained on), the code, the settings and what started it."""
    return {"kind": "batch", "run_id": summary["run_id"], "trigger": trigger or {"kind": "manual"},
            "code": provenance.code_version(), "data": data,
            "model": {"name": summary["model"], "version": summary["version"], "version_dir": summary["version_dir"],
                      "trained_on": metadata.get("data_version", ""), "pushed_at": metadata.get("pushed_at")},
            "params": {"batch": section_dict(params), "drift": section_dict(drift_params)},
            "outputs": {k: summary[k] for k in ("rows_read", "rows_scored", "bad_rows", "shards", "drifted",
                                                "lookup_keys", "scored_at")}}


def _write_bad_rows(path: Path, problems: list[tuple]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    columns = list(zip(*problems)) if problems else [[] for _ in BAD_ROW_COLUMNS]
    types = (pa.int64(), pa.string(), pa.string(), pa.string(), pa.string())
    pq.write_table(pa.table({n: pa.array(list(c), t) for n, c, t in zip(BAD_ROW_COLUMNS, columns, types)}), str(path))


@flywheel_component
def batch_score_component(data_path: str, data_rev: str, model_repository: str, model_name: str, version: int,
                          batch: dict, drift: dict, run_id: str, trigger: dict, predictions: dsl.Output[dsl.Dataset],
                          report: dsl.Output[dsl.HTML]):
    """Score a table with a pushed version (`version` 0: the served one) with params.yaml's `batch`
    and `drift` sections; the run is also published under the model's batch root (LATEST.json),
    where the sidecar's lookup finds it. `report` is the input's anomalies and drift page."""
    import shutil

    from components.batch_score import run
    from components.kfp_component import set_metadata
    from flywheel import batch_runs, names, storage
    from flywheel import model_repository as repo
    from flywheel import params as flywheel_params

    chosen = version or repo.production_version(model_repository, model_name)
    if chosen is None:
        raise ValueError(f"no version of {model_name} under {model_repository} to score with")
    settings = flywheel_params.build(flywheel_params.BatchParams, batch, "batch")
    summary = run(data_path, repo.version_dir(model_repository, model_name, chosen), predictions.path, model_name,
                  chosen, settings, flywheel_params.build(flywheel_params.DriftParams, drift, "drift"),
                  data_rev=data_rev, run_id=run_id, trigger=trigger)
    shutil.copyfile(f"{predictions.path}/{names.REPORT_HTML}", report.path)
    root = batch_runs.root(model_repository, model_name, settings.output_root)
    name = batch_runs.new_run_name(chosen)
    storage.copy_tree(predictions.path, batch_runs.run_dir(root, name))
    batch_runs.publish(root, name, summary)
    set_metadata(predictions, {k: summary[k] for k in ("model", "version", "rows_read", "rows_scored", "bad_rows",
                                                       "drifted", "data_version")})
    predictions.metadata["published"] = batch_runs.run_dir(root, name)
