"""Ingest: deterministic hash split, PII never written, the data version recorded."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from components import ingest
from flywheel import data_version, names

from flywheel.params import IngestParams
from tests.support.spans import LABEL, span, write_span


def test_split_is_deterministic_stable_and_80_10_10():
    df = span(1)
    splits = ingest.assign_splits(df)
    np.testing.assert_array_equal(splits, ingest.assign_splits(df.copy()))
    shares = pd.Series(splits).value_counts(normalize=True)
    assert abs(shares[names.TRAIN] - 0.8) < 0.03 and abs(shares[names.EVAL] - 0.1) < 0.02
    # Adding rows never moves the old ones: the split is a property of the row.
    grown = pd.concat([df, span(2, rows=500)], ignore_index=True)
    np.testing.assert_array_equal(ingest.assign_splits(grown)[: len(df)], splits)
    # A key column sends every row with the same key to the same split.
    by_company = pd.DataFrame({"company": df["company"], "split": ingest.assign_splits(df, "company")})
    assert (by_company.groupby("company", dropna=False)["split"].nunique() == 1).all()


def test_bad_buckets_rejected():
    with pytest.raises(ValueError, match="summing to 100"):
        ingest.assign_splits(span(1, rows=10), buckets=(80, 10, 5))


def test_run_writes_parquet_splits_without_pii(tmp_path):
    data = write_span(tmp_path, span(1))
    meta = ingest.run(str(data), tmp_path / "examples", IngestParams(label=LABEL))
    parts = {s: pd.read_parquet(tmp_path / "examples" / s / names.SPLIT_FILE) for s in names.SPLITS}
    assert sum(len(p) for p in parts.values()) == 5000
    assert all("rider_email" not in p.columns for p in parts.values())
    assert not any("@example.com" in f.read_bytes().decode("latin1") for f in (tmp_path / "examples").rglob("*.parquet"))
    assert meta["pii_removed"] == ["rider_email"] and "rider_email" not in meta["columns"]
    assert meta["rows_train"] == len(parts[names.TRAIN]) and meta["label"] == LABEL
    assert meta["data_version"] == "md5:" + hashlib.md5(data.read_bytes()).hexdigest()
    # Train, eval and test share no row.
    keyed = {s: set(map(tuple, p.astype(str).values)) for s, p in parts.items()}
    assert not keyed[names.TRAIN] & keyed[names.TEST] and not keyed[names.TRAIN] & keyed[names.EVAL]


def test_pii_hash_mode_keeps_a_joinable_token(tmp_path):
    data = write_span(tmp_path, span(1, rows=300))
    ingest.run(str(data), tmp_path / "examples", IngestParams(label=LABEL, pii_mode="hash"))
    train = pd.read_parquet(tmp_path / "examples" / names.TRAIN / names.SPLIT_FILE)
    assert train["rider_email"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_parquet_input_and_same_split_as_csv(tmp_path):
    df = span(1, rows=1000)
    csv_meta = ingest.run(str(write_span(tmp_path, df)), tmp_path / "from_csv", IngestParams(label=LABEL))
    df.to_parquet(tmp_path / "span.parquet", index=False)
    pq_meta = ingest.run(str(tmp_path / "span.parquet"), tmp_path / "from_parquet", IngestParams(label=LABEL))
    assert [csv_meta[f"rows_{s}"] for s in names.SPLITS] == [pq_meta[f"rows_{s}"] for s in names.SPLITS]


def test_dvc_tracking_recorded_and_modification_noticed(tmp_path):
    data = write_span(tmp_path, span(1, rows=200))
    md5 = hashlib.md5(data.read_bytes()).hexdigest()
    (tmp_path / "span.csv.dvc").write_text(f"outs:\n- md5: {md5}\n  size: 1\n  hash: md5\n  path: span.csv\n")
    assert data_version.dvc_tracking(str(data), md5) == "span.csv.dvc (matches)"
    assert "MODIFIED" in data_version.dvc_tracking(str(data), "0" * 32)


def test_label_rows_without_value_are_dropped(tmp_path):
    df = span(1, rows=400).astype({LABEL: "float"})
    df.loc[:9, LABEL] = np.nan
    meta = ingest.run(str(write_span(tmp_path, df)), tmp_path / "examples", IngestParams(label=LABEL))
    assert meta["rows_without_label"] == 10 and meta["rows_read"] == 400
