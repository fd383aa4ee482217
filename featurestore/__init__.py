"""The feature store: a Feast repository (`repo/`) over daily aggregates of the pickup areas, and
the commands that run in its own environment (`.venv-feast/`, `make feast`): generate the
aggregates, point-in-time join a table of entities and labels, materialise to the online store.

Feast lives in a process of its own because it needs numpy>=2 and pyarrow>=16 while the pipeline's
TFDV pins numpy 1.26 and pyarrow 10. The pipeline talks to it through files and HTTP only:
ingest writes the entity-and-label table as Parquet, runs `python -m featurestore join` with this
environment's Python and reads the joined table back; the sidecar asks Feast's feature server over
HTTP. Nothing here imports the rest of Flywheel, and nothing in Flywheel imports this package.
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent / "repo"

def area_stats(repo: Path = REPO) -> Path:
    """Where the repository's source table lives (`repo/features.py` says the same)."""
    return Path(os.environ.get("FLYWHEEL_FEATURE_DATA") or Path(repo).resolve().parent / "data") / "area_stats.parquet"

ENTITY = "pickup_area"
FEATURE_SERVICE = "taxi_area"
EVENT_TIMESTAMP = "event_timestamp"
