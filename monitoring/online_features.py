"""Entity features at serving time: a predict request whose rows carry the entity key (e.g.
`pickup_area`) instead of the entity's features gets them from the feature store before it goes
to the model, as training got them (featurestore/: the same feature service, point in time).

Design. The sidecar asks Feast's HTTP feature server (`POST /get-online-features`, one call per
request for its distinct keys) over a keep-alive connection pool (monitoring/upstream.py), so
Feast and its numpy/pyarrow stay in their own process and image; the feature server reads the
online store (SQLite on a laptop, Redis on a cluster). Only TF Serving's row format
(`{"instances": [{...}, ...]}`) is completed; other bodies, and rows without the key, pass
untouched. A row keeps a feature it carries; the store fills the ones it does not.

The completed body is what goes to the model and to the prediction log, so drift and the spans
built from the logs see the features the model saw. A key the store does not know (every feature
NOT_FOUND) answers 422 naming the key, the feature server failing answers 503; neither reaches
the model. Counted: rows by outcome (found, missing, error), the fetch time, and the newest event
timestamp among the values served (freshness: the alert `FlywheelOnlineFeaturesStale` compares it with now).
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json

from flywheel.params import FeatureStoreParams
from monitoring.metrics import ONLINE_FEATURE_OUTCOMES, SidecarMetrics
from monitoring.upstream import UpstreamError, UpstreamPool

PATH = "/get-online-features"
PRESENT = "PRESENT"
NOT_FOUND = "NOT_FOUND"
FOUND, MISSING, ERROR = ONLINE_FEATURE_OUTCOMES


@dataclasses.dataclass
class Completed:
    """The body to send on (and log), or the answer to give instead: (status, message)."""
    body: bytes = b""
    refused: tuple[int, str] | None = None


class OnlineFeatures:
    def __init__(self, params: FeatureStoreParams, metrics: SidecarMetrics, clock):
        self.params = params
        self.enabled = bool(params.server_url)
        self.needle = json.dumps(params.entity).encode()   # the key as it appears in a JSON body
        self.pool = UpstreamPool(params.server_url, params.timeout_s) if self.enabled else None
        self.rows = metrics.online_feature_rows
        self.fetch_duration = metrics.online_feature_fetch
        self.newest = metrics.online_feature_newest
        self.newest_seen = 0.0
        self.clock = clock

    def keyed_rows(self, body: bytes) -> tuple[dict, list[dict]] | None:
        """(the document, its rows that carry the key), or None when the request is not for us."""
        if not self.enabled or self.needle not in body:
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return None   # the proxy answers bad JSON as it always does
        instances = document.get("instances") if isinstance(document, dict) else None
        if not isinstance(instances, list):
            return None
        rows = [r for r in instances if isinstance(r, dict) and r.get(self.params.entity) is not None]
        return (document, rows) if rows else None

    async def complete(self, body: bytes) -> Completed | None:
        """None: the body goes on as it is. Else the completed body, or why the request is refused."""
        found = self.keyed_rows(body)
        if found is None:
            return None
        document, rows = found
        entity = self.params.entity
        keys = list(dict.fromkeys(r[entity] for r in rows))
        request = json.dumps({"feature_service": self.params.feature_service, "entities": {entity: keys}}).encode()
        start = self.clock()
        try:
            status, _, payload = await self.pool.request("POST", PATH, request, [("Content-Type", "application/json")])
            values = _by_key(json.loads(payload), entity, keys) if status == 200 else None
        except (UpstreamError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError) as error:
            status, values, payload = 0, None, f"{type(error).__name__}: {error}".encode()
        finally:
            self.fetch_duration.observe(self.clock() - start)
        if values is None:
            self.rows[ERROR].inc(len(rows))
            return Completed(refused=(503, f"the feature server {self.params.server_url} did not give the features "
                                      f"of {entity} (status {status}: {payload[:200].decode(errors='replace')})"))
        missing = [k for k in keys if values[k] is None]
        if missing:
            self.rows[MISSING].inc(sum(1 for r in rows if values[r[entity]] is None))
            return Completed(refused=(422, f"{entity} {', '.join(map(str, missing[:10]))}: not in the feature store "
                                      f"(feature service {self.params.feature_service})"))
        newest = 0.0
        for row in rows:
            features, stamp = values[row[entity]]
            newest = max(newest, stamp)
            for name, value in features.items():
                row.setdefault(name, value)
        self.rows[FOUND].inc(len(rows))
        if newest > self.newest_seen:
            self.newest_seen = newest
            self.newest.set(newest)
        return Completed(body=json.dumps(document).encode())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _by_key(answer: dict, entity: str, keys: list) -> dict:
    """Feast's answer (one result per feature, its values in the order of the keys) as
    key -> ({feature: value}, newest event timestamp), or None for a key no feature was found for."""
    names = answer["metadata"]["feature_names"]
    results = answer["results"]
    out = {}
    for i, key in enumerate(keys):
        features, newest, present = {}, 0.0, False
        for name, result in zip(names, results):
            if name == entity:
                continue
            status = result["statuses"][i]
            features[name] = result["values"][i] if status == PRESENT else None
            if status == PRESENT:
                present = True
                newest = max(newest, _epoch(result["event_timestamps"][i]))
            elif status != NOT_FOUND:
                present = True   # known, but null or too old: the model imputes it
        out[key] = (features, newest) if present else None
    return out


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
