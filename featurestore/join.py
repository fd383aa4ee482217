"""Point-in-time join: each row of an entity-and-label table gets the feature service's values as
of its own timestamp (Feast's get_historical_features: the latest row of each feature view
stamped at or before it, within the view's TTL), never a value stamped after it."""
from __future__ import annotations

import pandas as pd

from featurestore import ENTITY, EVENT_TIMESTAMP, FEATURE_SERVICE, REPO

ROW = "__flywheel_row"


def event_times(column: pd.Series, name: str) -> pd.Series:
    """A timestamp column as UTC datetimes: numbers are epoch seconds, text is parsed."""
    if pd.api.types.is_numeric_dtype(column):
        if column.isna().any():
            raise ValueError(f"column '{name}': {int(column.isna().sum())} rows have no timestamp")
        return pd.to_datetime(column.astype("int64"), unit="s", utc=True)
    try:
        return pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as error:
        raise ValueError(f"column '{name}': not a timestamp ({error})") from error


def lineage(store, service) -> dict:
    """What the join read: the service, and each feature view with its registered version."""
    views = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        versions = store.list_feature_view_versions(view.name)
        views.append({"name": view.name, "version": versions[-1].get("version") if versions else None,
                      "features": [f.name for f in projection.features],
                      "ttl_s": int(view.ttl.total_seconds()) if view.ttl else 0,
                      "source": getattr(view.batch_source, "path", "")})
    return {"feature_service": service.name, "project": store.project, "feature_views": views}


def join(entities: pd.DataFrame, timestamp_column: str, repo=REPO, service_name: str = FEATURE_SERVICE
         ) -> tuple[pd.DataFrame, dict]:
    """`entities` with the service's features added, rows in their order; and the lineage."""
    from feast import FeatureStore

    for column in (ENTITY, timestamp_column):
        if column not in entities.columns:
            raise ValueError(f"the table has no column '{column}' (the columns are {list(entities.columns)})")
    if entities[ENTITY].isna().any():
        raise ValueError(f"column '{ENTITY}': {int(entities[ENTITY].isna().sum())} rows have no key")
    store = FeatureStore(repo_path=str(repo))
    service = store.get_feature_service(service_name)
    frame = entities.assign(**{ROW: range(len(entities)),
                               EVENT_TIMESTAMP: event_times(entities[timestamp_column], timestamp_column)})
    # Feast keeps one row per (key, timestamp) pair, and leaves out pairs older than every feature
    # row: ask for the distinct pairs, then give every row its pair's values (none: no features).
    pairs = frame[[ENTITY, EVENT_TIMESTAMP]].drop_duplicates()
    values = store.get_historical_features(entity_df=pairs, features=service).to_df()
    values[EVENT_TIMESTAMP] = values[EVENT_TIMESTAMP].astype(pairs[EVENT_TIMESTAMP].dtype)
    joined = frame.merge(values, on=[ENTITY, EVENT_TIMESTAMP], how="left", validate="many_to_one")
    joined = joined.sort_values(ROW).drop(columns=[ROW, EVENT_TIMESTAMP]).reset_index(drop=True)
    return joined, lineage(store, service)
