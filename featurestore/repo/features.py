"""The feature definitions: the pickup area, its daily aggregates, and the service that trains
and serves on them. `make feast-apply` registers them (`feast apply` on this folder)."""
import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

# As featurestore.area_stats() says (`feast apply` loads this file on its own, without the
# package); a cluster keeps the data on its volume (FLYWHEEL_FEATURE_DATA, manifests/addons/featurestore).
AREA_STATS = Path(os.environ.get("FLYWHEEL_FEATURE_DATA") or Path(__file__).resolve().parent.parent / "data"
                  ) / "area_stats.parquet"

pickup_area = Entity(name="pickup_area", join_keys=["pickup_area"], value_type=ValueType.INT64,
                     description="Community area where the trip started (1..77)")

area_stats_source = FileSource(name="area_stats_source", path=str(AREA_STATS), timestamp_field="event_timestamp",
                               created_timestamp_column="created_timestamp")

# Each row aggregates one area's trips of one day and is stamped at the end of that day, when it
# is known; a trip sees the last day that ended before it started. Two days of TTL: an area
# without a row for yesterday gets nothing rather than an old value.
area_daily = FeatureView(
    name="area_daily",
    entities=[pickup_area],
    ttl=timedelta(days=2),
    schema=[
        Field(name="area_trips_1d", dtype=Int64, description="Trips that started in the area that day"),
        Field(name="area_tip_rate_1d", dtype=Float64, description="Share of those trips with a big tip"),
        Field(name="area_avg_fare_1d", dtype=Float64, description="Their mean fare"),
    ],
    source=area_stats_source,
    online=True,
)

taxi_area = FeatureService(name="taxi_area", features=[area_daily])
