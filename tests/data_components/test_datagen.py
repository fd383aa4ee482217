"""The generator: deterministic, the default dataset's columns, a learnable label, knobs validated."""
import time

import numpy as np
import pandas as pd
import pytest

from flywheel.params import DataParams, Shift
from tools import datagen


def test_same_params_same_rows_and_spans_differ():
    a = datagen.generate_span(DataParams(), 1)
    pd.testing.assert_frame_equal(a, datagen.generate_span(DataParams(), 1))
    assert not a.equals(datagen.generate_span(DataParams(), 2))
    assert not a.equals(datagen.generate_span(DataParams(seed=8), 1))


def test_columns_types_missing_values_and_span_week():
    p = DataParams()
    df = datagen.generate_span(p, 2)
    assert tuple(df.columns) == datagen.COLUMNS and len(df) == p.rows_per_span
    assert df["trip_start_timestamp"].dtype == np.int64 and df["trip_seconds"].dtype == np.int64
    assert df["fare"].dtype == float and df["trip_miles"].dtype == float
    assert set(df["payment_type"]) == set(datagen.PAYMENT_TYPES)
    assert set(df["company"].dropna()) == set(datagen.COMPANIES)
    assert df["rider_email"].str.endswith("@example.com").all()
    assert set(df[datagen.LABEL]) == {0, 1}
    for column in datagen.MAY_BE_MISSING:
        assert 0.005 < df[column].isna().mean() < 0.05
    week = pd.Timestamp(p.start_date, tz="UTC").timestamp() + 7 * 86400
    assert week <= df["trip_start_timestamp"].min() and df["trip_start_timestamp"].max() < week + 7 * 86400


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = pd.Series(scores).rank().to_numpy()
    positives = labels.sum()
    negatives = len(labels) - positives
    return (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)


def test_label_follows_the_known_function():
    df = datagen.generate_span(DataParams(), 1)
    complete = df.assign(trip_miles=df["trip_miles"].fillna(df["trip_miles"].median()))
    logit = datagen._logit(complete, {term: 1.0 for term in datagen.LOGIT_TERMS})
    assert 0.78 < _auc(logit, df[datagen.LABEL].to_numpy()) < 0.9   # learnable, not trivial
    rates = df.groupby("payment_type")[datagen.LABEL].mean()
    assert rates["Credit Card"] > 0.6 > 0.2 > rates["Cash"]


def test_write_spans_is_fast_and_removes_stale_spans(tmp_path):
    (tmp_path / "span-009.csv").write_text("stale")
    start = time.monotonic()
    written = datagen.write_spans(DataParams(), tmp_path)
    assert time.monotonic() - start < 10      # 3 x 5000 rows; ~1 s on an idle core
    assert sorted(p.name for p in tmp_path.iterdir()) == ["span-001.csv", "span-002.csv", "span-003.csv"]
    assert [p.name for p in written] == ["span-001.csv", "span-002.csv", "span-003.csv"]


def test_main_reads_params_file(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("data:\n  rows_per_span: 50\n  spans: 2\n  output_dir: out\n")
    assert datagen.main(["--params", str(params_file)]) == 0
    assert len(pd.read_csv(tmp_path / "out" / "span-002.csv")) == 50


@pytest.mark.parametrize("shift, message", [
    (Shift(span=1, kind="tilt", feature="fare"), "kind 'tilt'"),
    (Shift(span=1, kind="covariate", feature="rider_email"), "cannot apply to feature 'rider_email'"),
    (Shift(span=1, kind="concept", feature="company"), "cannot apply to feature 'company'"),
])
def test_bad_shift_is_named(shift, message):
    with pytest.raises(ValueError, match=message):
        datagen.generate_span(DataParams(shifts=(shift,)), 1)


def test_shifts_touch_only_their_span():
    shifted = DataParams(shifts=(Shift(span=2, kind="covariate", feature="fare", magnitude=1.0),))
    pd.testing.assert_frame_equal(datagen.generate_span(shifted, 1), datagen.generate_span(DataParams(), 1))
    assert datagen.generate_span(shifted, 2)["fare"].mean() > 1.8 * datagen.generate_span(DataParams(), 2)["fare"].mean()


def test_concept_shift_reverses_the_effect():
    df = datagen.generate_span(DataParams(shifts=(Shift(1, "concept", "payment_type", 1.0),)), 1)
    rates = df.groupby("payment_type")[datagen.LABEL].mean()
    assert rates["Cash"] > rates["Credit Card"]
