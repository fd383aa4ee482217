"""Materialisation: copy the feature views' rows up to `now` into the online store. The first run
starts at the oldest row of each source; later runs carry on from where the last one ended
(Feast records the intervals in the registry)."""
from __future__ import annotations

import datetime as dt

import pandas as pd


def run(repo, now: dt.datetime, config=None) -> dict:
    """`config`: a feature_store.yaml other than the repository's (a cluster's, with Redis)."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=config)
    done = {}
    for view in store.list_feature_views():
        if view.most_recent_end_time is None:
            times = pd.read_parquet(view.batch_source.path, columns=[view.batch_source.timestamp_field])
            start = times.iloc[:, 0].min().to_pydatetime()
            store.materialize(start_date=start, end_date=now, feature_views=[view.name])
        else:
            store.materialize_incremental(end_date=now, feature_views=[view.name])
        done[view.name] = now.isoformat()
    return done
