"""The in-memory, streaming and Beam data paths agree: the same rows in the same splits, the same
columns and types, the same counts in the statistics, quantiles within TFDV's sketch tolerance,
drift profiles close to the exact ones, and the same drift and skew decisions.

Small data with small batches and shards, so every batch and shard boundary is crossed: about
40 s in all, of which the Beam test takes about 20 s (DirectRunner in one process)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import drift_agreement
from components import engines, ingest, splits, statistics, validate
from flywheel import artifacts, bundle, names, params
from flywheel.errors import DataError
from flywheel.params import IngestParams, ScaleParams
from pipelines import chain
from tests.support.spans import CURATED, LABEL, SETTINGS, span, write_span

INGEST = IngestParams(label=LABEL)
STREAM = ScaleParams(mode="streaming", batch_rows=700, shard_rows=1500)
MEMORY = ScaleParams(mode="in_memory")
# TFDV's quantiles sketch (epsilon 0.01) against exact quantiles: a boundary off by at most this
# share of rows, and the rule's effect size (W1 in sd) by at most this much.
QUANTILE_TOLERANCE = 0.02
W1_TOLERANCE = 0.02


def _splits(examples) -> dict[str, pd.DataFrame]:
    return {s: artifacts.read_split(examples, s) for s in names.SPLITS}


def _same_rows(a: dict, b: dict, ordered: bool = True) -> None:
    for split in names.SPLITS:
        left, right = a[split], b[split]
        assert list(left.columns) == list(right.columns), split
        assert left.dtypes.equals(right.dtypes), (split, left.dtypes, right.dtypes)
        if not ordered:
            left = left.sort_values(list(left.columns)).reset_index(drop=True)
            right = right.sort_values(list(right.columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, check_exact=True)


@pytest.fixture(scope="module")
def default_span(tmp_path_factory):
    return write_span(tmp_path_factory.mktemp("span"), span(1, rows=4000))


def test_row_hashes_are_pandas_hash_pandas_object():
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame({
        "i": rng.integers(-5, 5, n), "f": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "few": rng.choice(np.array(["a", "b", None], dtype=object), n),
        "many": np.array([None if k % 17 == 0 else f"id-{k}" for k in rng.integers(0, 10**9, n)], dtype=object),
    })
    expected = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    assert (splits.row_hashes(frame) == expected).all()
    key = pd.util.hash_pandas_object(frame["many"], index=False).to_numpy()
    assert (splits.column_hash(frame["many"].to_numpy()) == key).all()


def test_streaming_ingest_writes_the_in_memory_rows_in_shards(tmp_path, default_span):
    memory = ingest.run(str(default_span), tmp_path / "memory", INGEST, scale=MEMORY)
    streamed = ingest.run(str(default_span), tmp_path / "stream", INGEST, scale=STREAM)
    assert (memory["engine"], streamed["engine"]) == (engines.IN_MEMORY, engines.STREAMING)
    assert streamed["shards"][names.TRAIN] > 1
    for key in memory:
        if key != "engine":
            assert streamed[key] == memory[key], key
    _same_rows(_splits(tmp_path / "memory"), _splits(tmp_path / "stream"))
    assert [p.name for p in artifacts.split_files(tmp_path / "stream", names.EVAL)] == \
        ["data-00000-of-00001.parquet"]


def test_types_follow_pandas_over_the_whole_file(tmp_path):
    """A late missing value makes an integer column float, a late word makes a number column text
    (the first pass starts again), True/False is 0/1, the tokens pandas reads as missing are missing,
    a quoted line break stays in its value: the same frame, the same splits as pandas gives."""
    n = 3000
    rows = []
    for k in range(n):
        rows.append({
            "late_gap": "" if k == n - 10 else str(k % 7),
            "late_word": "n/a" if k == 5 else ("many" if k == n - 3 else str(k % 11)),
            "flag": "True" if k % 3 else "False",
            "text": '"two\nlines"' if k == 100 else ("NA" if k % 50 == 0 else f"t{k % 13}"),
            "empty": "",
            "x": f"{k * 0.37:.2f}",
            LABEL: str(k % 2),
        })
    path = tmp_path / "odd.csv"
    path.write_text(",".join(rows[0]) + "\n" + "\n".join(",".join(r.values()) for r in rows) + "\n")
    memory = ingest.run(str(path), tmp_path / "memory", INGEST, scale=MEMORY)
    streamed = ingest.run(str(path), tmp_path / "stream", INGEST, scale=ScaleParams(mode="streaming", batch_rows=200))
    assert streamed["rows_read"] == memory["rows_read"] == n
    a, b = _splits(tmp_path / "memory"), _splits(tmp_path / "stream")
    _same_rows(a, b)
    whole = pd.concat(b.values())
    assert whole["late_gap"].dtype == np.float64 and whole["late_word"].dtype == object
    assert whole["flag"].dtype == np.int64 and whole["empty"].isna().all()
    assert (whole["text"] == "two\nlines").sum() == 1


def test_a_directory_of_shards_reads_as_one_table(tmp_path, default_span):
    whole = pd.read_csv(default_span)
    shards = tmp_path / "shards"
    for i, part in enumerate(np.array_split(whole, 3)):
        write_span(shards, part, f"part-{i}.csv")
    single = ingest.run(str(default_span), tmp_path / "single", INGEST, scale=MEMORY)
    sharded = ingest.run(str(shards), tmp_path / "sharded", INGEST, scale=STREAM)
    assert sharded["input_files"] == 3 and sharded["rows_read"] == single["rows_read"]
    assert sharded["data_version"].startswith("md5:") and sharded["data_version"] != single["data_version"]
    _same_rows(_splits(tmp_path / "single"), _splits(tmp_path / "sharded"))
    again = ingest.run(str(tmp_path / "shards" / "part-*.csv"), tmp_path / "glob", INGEST, scale=STREAM)
    assert again["data_version"] == sharded["data_version"]

    write_span(shards, whole.drop(columns=["fare"]).head(50), "part-3.csv")
    with pytest.raises(DataError, match="part-3.csv.*differ from the first shard"):
        ingest.run(str(shards), tmp_path / "bad", INGEST, scale=STREAM)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("content, expected", [
    (b"a,big_tipper\n1,1\n2,1\n3,1\n", "single value"),
    (b"a,b\n1,2\n", "label column 'big_tipper' is missing"),
    (b"a,big_tipper\n1,\n2,\n", "no values"),
    (b"a,big_tipper\n\xe9t\xe9,1\n2,0\n", "not UTF-8"),
    (b"a,big_tipper\n1,0,9\n2,1\n", "not a well-formed CSV"),
    (b"", "empty"),
])
def test_bad_input_on_the_streaming_path_is_named_and_writes_nothing(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        ingest.run(str(path), tmp_path / "out", INGEST, scale=STREAM)
    assert not (tmp_path / "out").exists()


def test_streaming_statistics_agree_with_in_memory(tmp_path, default_span):
    ingest.run(str(default_span), tmp_path / "examples", INGEST, scale=MEMORY)
    memory = statistics.run(tmp_path / "examples", tmp_path / "memory", schema_path=CURATED, label=LABEL, scale=MEMORY)
    streamed = statistics.run(tmp_path / "examples", tmp_path / "stream", schema_path=CURATED, label=LABEL,
                              scale=STREAM)
    assert memory["time_columns"] == streamed["time_columns"] and streamed["profiles"] == "tfdv_quantiles"
    for split in names.SPLITS:
        _stats_agree(bundle.read_stats(str(artifacts.stats_file(tmp_path / "memory", split))),
                     bundle.read_stats(str(artifacts.stats_file(tmp_path / "stream", split))))
        _profiles_agree(bundle.read_profiles(str(artifacts.profiles_file(tmp_path / "memory", split))),
                        bundle.read_profiles(str(artifacts.profiles_file(tmp_path / "stream", split))))


def _stats_agree(a, b) -> None:
    """Counts exact, moments to float precision, top values exact, quantiles within tolerance."""
    from flywheel import drift
    da, db = a.datasets[0], b.datasets[0]
    assert da.num_examples == db.num_examples
    fa = {f.path.step[0]: f for f in da.features}
    fb = {f.path.step[0]: f for f in db.features}
    assert set(fa) == set(fb)
    for name, x in fa.items():
        y = fb[name]
        assert x.type == y.type, name
        if x.HasField("num_stats"):
            cx, cy = x.num_stats.common_stats, y.num_stats.common_stats
            assert (cx.num_non_missing, cx.num_missing) == (cy.num_non_missing, cy.num_missing), name
            assert (x.num_stats.min, x.num_stats.max, x.num_stats.num_zeros) == \
                (y.num_stats.min, y.num_stats.max, y.num_stats.num_zeros), name
            assert x.num_stats.mean == pytest.approx(y.num_stats.mean, rel=1e-9), name
            gap = drift_agreement.gap(drift.profile_from_feature_stats(x), drift.profile_from_feature_stats(y))
            assert gap["gap"] <= QUANTILE_TOLERANCE, (name, gap)
        else:
            cx, cy = x.string_stats.common_stats, y.string_stats.common_stats
            assert (cx.num_non_missing, cx.num_missing) == (cy.num_non_missing, cy.num_missing), name
            assert [(v.value, v.frequency) for v in x.string_stats.top_values] == \
                [(v.value, v.frequency) for v in y.string_stats.top_values], name
            assert x.string_stats.unique == y.string_stats.unique, name


def _profiles_agree(exact, sketched) -> None:
    gaps = drift_agreement.gaps(exact, sketched)
    for name, found in gaps.items():
        if found["kind"] == "categorical":
            assert found["counts_equal"], (name, found)
        else:
            assert found["kind"] == "numeric", (name, found)
            assert found["gap"] <= QUANTILE_TOLERANCE and found["w1_sd"] <= W1_TOLERANCE, (name, found)


def test_drift_and_skew_decisions_are_the_same_on_both_paths(tmp_path):
    """Span 3 of the default data drifts (trip_miles, payment_type): both paths find the same."""
    drifted = write_span(tmp_path / "data", span(3, shifts=params.DataParams().shifts, rows=4000), "span-3.csv")
    baseline = write_span(tmp_path / "data", span(1, rows=4000), "span-1.csv")
    found = {}
    for mode in (engines.IN_MEMORY, engines.STREAMING):
        settings = params.override(SETTINGS, {"scale.mode": mode, "scale.batch_rows": 600, "scale.shard_rows": 1000,
                                              "ingest.label": LABEL})
        reference = chain.run(str(baseline), tmp_path / f"ref-{mode}", settings, until="statistics")
        run = chain.run(str(drifted), tmp_path / f"cur-{mode}", settings, until="validate",
                        baseline_stats=str(artifacts.stats_file(reference.statistics, names.TRAIN)))
        report = run.results["validate"]
        found[mode] = sorted((a["kind"], a["feature"]) for a in report if a["kind"] in (validate.DRIFT, validate.SKEW))
    assert found[engines.IN_MEMORY] == found[engines.STREAMING]
    assert {(validate.DRIFT, "trip_miles"), (validate.DRIFT, "payment_type")} <= set(found[engines.STREAMING])


def test_auto_chooses_by_size_and_later_steps_follow(tmp_path):
    auto = ScaleParams(in_memory_max_bytes=1000)
    assert engines.choose(auto, 1000) == engines.IN_MEMORY
    assert engines.choose(auto, 1001) == engines.STREAMING
    assert engines.choose(ScaleParams(in_memory_max_bytes=10, beam_runner="DataflowRunner"), 11) == engines.BEAM
    assert engines.follow(auto, engines.STREAMING) == engines.STREAMING
    assert engines.follow(ScaleParams(mode=engines.IN_MEMORY), engines.STREAMING) == engines.IN_MEMORY
    with pytest.raises(ValueError, match="scale.mode"):
        engines.choose(ScaleParams(mode="fast"), 1)
    options = engines.pipeline_options(ScaleParams(beam_runner="FlinkRunner",
                                                   beam_options=("--flink_master=localhost:8081", "--parallelism=4")))
    flags = options.get_all_options()
    assert flags["runner"] == "FlinkRunner" and flags["flink_master"] == "localhost:8081" and flags["parallelism"] == 4
    assert engines.workers(ScaleParams(beam_runner="FlinkRunner", beam_options=("--parallelism=4",))) == 4


def test_beam_path_writes_the_same_splits_and_statistics(tmp_path, default_span):
    """DirectRunner in one process for the test's speed; `make bench-scale` runs it multi-process."""
    beam = ScaleParams(mode="beam", batch_rows=500, beam_options=("--direct_running_mode=in_memory",))
    memory = ingest.run(str(default_span), tmp_path / "memory", INGEST, scale=MEMORY)
    found = ingest.run(str(default_span), tmp_path / "beam", INGEST, scale=beam)
    assert found["engine"] == engines.BEAM
    for key in memory:
        if key != "engine":
            assert found[key] == memory[key], key
    _same_rows(_splits(tmp_path / "memory"), _splits(tmp_path / "beam"), ordered=False)
    statistics.run(tmp_path / "memory", tmp_path / "stats-memory", schema_path=CURATED, label=LABEL, scale=MEMORY)
    statistics.run(tmp_path / "beam", tmp_path / "stats-beam", schema_path=CURATED, label=LABEL, scale=beam)
    for split in names.SPLITS:
        _stats_agree(bundle.read_stats(str(artifacts.stats_file(tmp_path / "stats-memory", split))),
                     bundle.read_stats(str(artifacts.stats_file(tmp_path / "stats-beam", split))))
        _profiles_agree(bundle.read_profiles(str(artifacts.profiles_file(tmp_path / "stats-memory", split))),
                        bundle.read_profiles(str(artifacts.profiles_file(tmp_path / "stats-beam", split))))
