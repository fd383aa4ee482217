"""The entity-feature table of the default data: per pickup area and day, the trips, the share
with a big tip and the mean fare, stamped at the end of the day (when the aggregate is known).

It is computed from the spans themselves, so the aggregates of the day a trip belongs to include
that trip's own label: joining a trip to its own day's row leaks the label (the trap the
point-in-time join avoids: a trip sees the day that ended before it started)."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd

from featurestore import ENTITY, EVENT_TIMESTAMP

DAY = 86400
AREAS = np.arange(1, 78)   # the generator's community areas
TIME_COLUMN = "trip_start_timestamp"
LABEL = "big_tipper"


def area_daily(trips: pd.DataFrame) -> pd.DataFrame:
    """One row per area and day from the first to the last day of `trips` (areas without trips
    that day: 0 trips, no rate, no fare), stamped at the day's end."""
    missing = {TIME_COLUMN, ENTITY, LABEL, "fare"} - set(trips.columns)
    if missing:
        raise ValueError(f"the trips have no column(s) {sorted(missing)}; the columns are {list(trips.columns)}")
    day = trips[TIME_COLUMN].astype(np.int64) // DAY
    grouped = trips.assign(day=day).groupby(["day", ENTITY])
    stats = pd.DataFrame({"area_trips_1d": grouped.size(), "area_tip_rate_1d": grouped[LABEL].mean(),
                          "area_avg_fare_1d": grouped["fare"].mean()})
    days = np.arange(day.min(), day.max() + 1)
    full = pd.MultiIndex.from_product([days, AREAS], names=["day", ENTITY])
    stats = stats.reindex(full).reset_index()
    stats["area_trips_1d"] = stats["area_trips_1d"].fillna(0).astype(np.int64)
    stats[ENTITY] = stats[ENTITY].astype(np.int64)
    stamp = pd.to_datetime((stats.pop("day") + 1) * DAY, unit="s", utc=True)
    stats[EVENT_TIMESTAMP] = stamp
    stats["created_timestamp"] = stamp
    return stats


def generate(spans: str | Path, out: Path) -> pd.DataFrame:
    """Read every span CSV under `spans`, write the table to `out` (atomically) and return it."""
    files = sorted(glob.glob(os.path.join(str(spans), "*.csv")))
    if not files:
        raise FileNotFoundError(f"{spans}: no span CSV files; run `make data` first")
    table = area_daily(pd.concat([pd.read_csv(f, usecols=[TIME_COLUMN, ENTITY, LABEL, "fare"]) for f in files]))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_suffix(".parquet.tmp")
    table.to_parquet(staging, index=False)
    os.replace(staging, out)
    return table
