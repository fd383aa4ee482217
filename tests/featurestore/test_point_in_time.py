"""Training data from the feature store: ingest's point-in-time join on real Feast (its own
environment), against aggregates that hold a leakage trap.

The area aggregates of a day include the labels of that day's trips, so a join on (area, day of
the trip) hands each row a tip rate computed from its own label. The point-in-time join must give
each trip the aggregates of the last day that ended at or before it started, and nothing later."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components import ingest
from flywheel import names
from flywheel.errors import DataError
from flywheel.params import IngestParams

DAY = 86400
FEATURES = ["area_trips_1d", "area_tip_rate_1d", "area_avg_fare_1d"]


@pytest.fixture(scope="module")
def joined(store, tmp_path_factory):
    repo, spans = store
    params = IngestParams(features=True, feature_repo=str(repo))
    out = tmp_path_factory.mktemp("examples")
    metadata = ingest.run_in_memory(str(spans / "span-001.csv"), out, params)   # its first day has no day before
    rows = pd.concat([pd.read_parquet(out / split / names.SPLIT_FILE) for split in names.SPLITS])
    return rows, metadata, spans


def _daily(trips: pd.DataFrame) -> pd.DataFrame:
    """The aggregates per (area, day), computed here from the raw trips of every span."""
    day = trips["trip_start_timestamp"] // DAY
    grouped = trips.assign(day=day).groupby(["pickup_area", "day"])
    return pd.DataFrame({"area_trips_1d": grouped.size(), "area_tip_rate_1d": grouped["big_tipper"].mean(),
                         "area_avg_fare_1d": grouped["fare"].mean()})


def _expected(rows: pd.DataFrame, trips: pd.DataFrame, day_offset: int) -> pd.DataFrame:
    keys = pd.MultiIndex.from_arrays([rows["pickup_area"], rows["trip_start_timestamp"] // DAY + day_offset])
    expected = _daily(trips).reindex(keys).reset_index(drop=True)
    # The table has every area every day from the first day on (0 trips when none); before it, nothing.
    known = keys.get_level_values(1) >= trips["trip_start_timestamp"].min() // DAY
    expected.loc[known & expected["area_trips_1d"].isna(), "area_trips_1d"] = 0
    return expected


def test_each_row_gets_the_day_that_ended_before_it_and_nothing_later(joined):
    rows, _, spans = joined
    trips = pd.concat([pd.read_csv(f) for f in sorted(spans.glob("*.csv"))])
    rows = rows.reset_index(drop=True)
    as_of = _expected(rows, trips, -1)
    first_day = rows["trip_start_timestamp"] // DAY == trips["trip_start_timestamp"].min() // DAY
    assert first_day.sum() > 100 and rows.loc[first_day, FEATURES].isna().all().all()
    for feature in FEATURES:
        np.testing.assert_allclose(rows[feature].to_numpy(float), as_of[feature].to_numpy(float),
                                   rtol=1e-9, equal_nan=True, err_msg=feature)
    # The trap is real: the naive join on the trip's own day gives other values, and its tip rate
    # carries the row's label (rows of small area-days are mostly their own label).
    naive = _expected(rows, trips, 0)
    assert (naive["area_tip_rate_1d"] - rows["area_tip_rate_1d"]).abs().max() > 0.5
    label = rows["big_tipper"].to_numpy()
    gap = lambda rate: np.nanmean(rate[label == 1]) - np.nanmean(rate[label == 0])   # noqa: E731
    assert gap(naive["area_tip_rate_1d"].to_numpy()) > 0.1 > abs(gap(rows["area_tip_rate_1d"].to_numpy()))


def test_the_span_keeps_every_row_and_names_the_feature_views(joined):
    rows, metadata, spans = joined
    assert len(rows) == len(pd.read_csv(spans / "span-001.csv")) == metadata["rows_read"]
    assert set(FEATURES) <= set(metadata["columns"])
    assert "rider_email" not in rows.columns   # PII removed after the join as before
    record = metadata["features"]
    assert record["feature_service"] == "taxi_area"
    (view,) = record["feature_views"]
    assert view["name"] == "area_daily" and view["version"] == "v0" and view["features"] == FEATURES
    assert view["ttl_s"] == 2 * DAY


def test_bad_input_names_the_column_and_writes_nothing(store, tmp_path):
    repo, spans = store
    table = pd.read_csv(spans / "span-001.csv").drop(columns=["trip_start_timestamp"])
    table.to_csv(tmp_path / "no_time.csv", index=False)
    with pytest.raises(DataError, match="trip_start_timestamp"):
        ingest.run_in_memory(str(tmp_path / "no_time.csv"), tmp_path / "out",
                             IngestParams(features=True, feature_repo=str(repo)))
    table = pd.read_csv(spans / "span-001.csv").astype({"pickup_area": object})
    table.loc[3, "pickup_area"] = None
    table.to_csv(tmp_path / "no_key.csv", index=False)
    with pytest.raises(DataError, match="pickup_area.*1 rows have no key"):
        ingest.run_in_memory(str(tmp_path / "no_key.csv"), tmp_path / "out",
                             IngestParams(features=True, feature_repo=str(repo)))
    with pytest.raises(DataError, match="make feast"):
        ingest.run_in_memory(str(spans / "span-001.csv"), tmp_path / "out",
                             IngestParams(features=True, feast_python=str(tmp_path / "absent" / "python")))
    assert not (tmp_path / "out").exists()
