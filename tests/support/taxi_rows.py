"""Taxi-like rows for the serving, monitoring and dashboard tests, with knobs that shift one
numeric and one categorical feature (the drift the sidecar and the dashboards must see)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

LABEL = "big_tipper"
FEATURES = {  # name -> the dtype kind serving receives
    "trip_start_timestamp": "int", "trip_miles": "float", "trip_seconds": "int", "fare": "float",
    "passenger_count": "int", "pickup_area": "int", "payment_type": "string", "company": "string",
}
PAYMENT_TYPES = ["Credit Card", "Cash", "Mobile", "Prcard", "Unknown"]
COMPANIES = [f"Company {i}" for i in range(10)]


def make_frame(n: int, seed: int, miles_scale: float = 1.0, cash_share: float = 0.3) -> pd.DataFrame:
    """Taxi-like rows; miles_scale and cash_share shift a numeric and a categorical feature."""
    rng = np.random.default_rng(seed)
    miles = rng.gamma(2.0, 2.0, n) * miles_scale
    others = (1 - cash_share) / (len(PAYMENT_TYPES) - 1)
    frame = pd.DataFrame({
        "trip_start_timestamp": rng.integers(1_767_600_000, 1_768_200_000, n).astype("int64"),
        "trip_miles": miles.astype("float32"),
        "trip_seconds": (miles * 180 + rng.integers(60, 600, n)).astype("int64"),
        "fare": (3.25 + miles * 2.25 + rng.normal(0, 1, n)).astype("float32"),
        "passenger_count": rng.integers(1, 5, n).astype("int64"),
        "pickup_area": rng.integers(1, 20, n).astype("int64"),
        "payment_type": rng.choice(PAYMENT_TYPES, n, p=[others, cash_share, others, others, others]),
        "company": rng.choice(COMPANIES, n),
    })
    frame[LABEL] = (rng.random(n) < np.where(frame.payment_type == "Credit Card", 0.7, 0.2)).astype("int64")
    return frame


def rows_of(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows without the label, as a client sends them."""
    return json.loads(frame.drop(columns=[LABEL]).to_json(orient="records"))


def fares_reversed(frame: pd.DataFrame) -> pd.DataFrame:
    """Fares handed out in the reverse order of the trips' miles: every value of both columns is
    kept (the same marginals: no per-feature test can see it), their correlation flips sign."""
    out = frame.copy()
    both = (out["fare"].notna() & out["trip_miles"].notna()).to_numpy()
    rows = np.flatnonzero(both)
    by_miles = rows[np.argsort(out["trip_miles"].to_numpy()[rows], kind="stable")]
    fare = out["fare"].to_numpy().copy()
    fare[by_miles] = np.sort(fare[rows])[::-1]
    out["fare"] = fare
    return out
