"""Deterministic taxi-trip-like spans, with known shifts, so drift detection has ground truth.

`python -m tools.datagen` (the DVC stage `generate`) writes `data.output_dir/span-001.csv`
... one CSV per span of `data.span_days` days, from the `data` section of params.yaml.

The label `big_tipper` ("tip above 20% of the fare") is drawn from a known logistic function
of the features (see `_logit`): paying by card or phone, riding at night and short, cheap
trips make a big tip likely, paying cash makes it rare. A model that learns the function
reaches an AUC near 0.8; the noise is the rider's mood.

Shifts (`data.shifts`, each {span, kind, feature, magnitude}) perturb one span:
- covariate: the feature's distribution moves, P(label | features) does not. Numeric features
  are scaled by (1 + magnitude) (trip_miles before fare and seconds are derived from it, so
  they move too); categorical features send a fraction `magnitude` of rows to their last
  value (payment_type -> Unknown, company -> the last company, pickup_area -> 77).
- concept: the label function changes: the feature's term in the logit is multiplied by
  (1 - 2 * magnitude), so magnitude 1 reverses its effect, and the base log-odds rise by
  `magnitude` (tipping habits changed). TFDV statistics are per feature, so they see a concept
  shift only through the label's distribution, which the base-rate move guarantees; the
  reversed effect itself shows up in evaluation (the production model scores worse).
- schema_skew: magnitude >= 1 removes the column; 0 < magnitude < 1 changes its type: a
  numeric column gets a unit suffix on that fraction of rows ("3.20 u", so the whole CSV
  column reads as text), a string column is replaced by integer codes.
- new_value: a value the schema has never seen appears in a categorical column (a new payment
  type, a new company) on a fraction `magnitude` of rows: a legitimate change of the data that
  a reviewed schema update accepts (`make schema-update`).
- feature_skew: a transformation applied in one path only: the rows that ingest's
  deterministic split sends to the eval split get the feature transformed (numeric: scaled by
  1 + magnitude, e.g. 0.609 for miles -> km; string: upper-cased), train and test do not. So
  train/eval skew is known truth. Rows whose split would change under the transformation
  are replaced by fresh ones, so every span still has `rows_per_span` rows.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from components.splits import assign_splits
from flywheel import names
from flywheel import params as params_mod
from flywheel.params import DataParams, IngestParams, Shift

LABEL = "big_tipper"
PII_COLUMN = "rider_email"
PAYMENT_TYPES = ("Credit Card", "Cash", "Mobile", "Prcard", "Unknown")
PAYMENT_WEIGHTS = (0.45, 0.33, 0.12, 0.05, 0.05)
PAYMENT_EFFECT = {"Credit Card": 1.1, "Cash": -2.1, "Mobile": 0.9, "Prcard": 0.0, "Unknown": -0.9}
COMPANIES = (
    "Flash Cab", "Taxi Affiliation Services", "Yellow Cab", "Sun Taxi", "City Service",
    "Chicago Carriage Cab", "Medallion Leasin", "Globe Taxi", "Blue Ribbon Taxi", "Star North",
)
PICKUP_AREAS = 77
COLUMNS = (
    "trip_start_timestamp", "trip_miles", "trip_seconds", "fare", "passenger_count",
    "pickup_area", "payment_type", "company", PII_COLUMN, LABEL,
)
NUMERIC = ("trip_miles", "trip_seconds", "fare", "passenger_count")
CATEGORICAL = {"payment_type": PAYMENT_TYPES, "company": COMPANIES, "pickup_area": tuple(range(1, PICKUP_AREAS + 1))}
# Columns that go missing at `missing_rate` (float and string columns only: a missing value in
# an integer CSV column would turn the column into floats and change its type).
MAY_BE_MISSING = ("trip_miles", "company")
# Features with a term in the label function, i.e. what a concept shift can change.
LOGIT_TERMS = ("payment_type", "fare", "trip_miles", "trip_start_timestamp", "passenger_count")
KINDS = ("covariate", "concept", "schema_skew", "feature_skew", "new_value")
NEW_VALUES = {"payment_type": "Crypto", "company": "Nova Cab"}


def span_file(span: int) -> str:
    return f"span-{span:03d}.csv"


def _check_shift(shift: Shift) -> None:
    if shift.kind not in KINDS:
        raise ValueError(f"params data.shifts: kind '{shift.kind}' for span {shift.span} is not one of {KINDS}")
    allowed = {
        "covariate": NUMERIC + tuple(CATEGORICAL),
        "concept": LOGIT_TERMS,
        "schema_skew": COLUMNS[:-2],
        "feature_skew": NUMERIC + ("payment_type", "company"),
        "new_value": tuple(NEW_VALUES),
    }[shift.kind]
    if shift.feature not in allowed:
        raise ValueError(f"params data.shifts: a {shift.kind} shift (span {shift.span}) cannot apply to "
                         f"feature '{shift.feature}'; choose one of {sorted(allowed)}")


def _hours(rng: np.random.Generator, n: int) -> np.ndarray:
    # Two commuter peaks and a night tail, as city taxi data looks.
    peak = rng.choice(3, size=n, p=(0.4, 0.45, 0.15))
    centre = np.array([8.5, 18.0, 1.0])[peak]
    width = np.array([1.5, 2.0, 1.5])[peak]
    return np.mod(np.round(rng.normal(centre, width)), 24).astype(np.int64)


def _is_night(timestamps: np.ndarray) -> np.ndarray:
    hour = (timestamps // 3600) % 24
    return ((hour >= 22) | (hour <= 4)).astype(float)


def _logit(df: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """The known label function: log-odds of a tip above 20% of the fare."""
    pay = df["payment_type"].map(PAYMENT_EFFECT).to_numpy(dtype=float)
    return (0.2
            + weights["payment_type"] * pay
            + weights["fare"] * -0.04 * (df["fare"].to_numpy() - 15.0)
            + weights["trip_miles"] * -0.15 * np.log1p(df["trip_miles"].to_numpy())
            + weights["trip_start_timestamp"] * 0.9 * _is_night(df["trip_start_timestamp"].to_numpy())
            + weights["passenger_count"] * -0.15 * (df["passenger_count"].to_numpy() - 1))


def _move_category(values: np.ndarray, domain: tuple, fraction: float, rng: np.random.Generator) -> np.ndarray:
    moved = rng.random(len(values)) < min(max(fraction, 0.0), 1.0)
    out = values.copy()
    out[moved] = domain[-1]
    return out


def _draw(rng: np.random.Generator, n: int, span: int, p: DataParams, shifts: list[Shift]) -> pd.DataFrame:
    covariate = {s.feature: s.magnitude for s in shifts if s.kind == "covariate"}
    start = dt.datetime.fromisoformat(p.start_date).replace(tzinfo=dt.timezone.utc)
    span_start = int(start.timestamp()) + (span - 1) * p.span_days * 86400
    day = rng.integers(0, p.span_days, size=n)
    seconds_in_hour = rng.integers(0, 3600, size=n)
    timestamps = span_start + day * 86400 + _hours(rng, n) * 3600 + seconds_in_hour

    miles = np.clip(rng.lognormal(np.log(2.5), 0.8, size=n), 0.1, 60.0)
    miles *= 1.0 + covariate.get("trip_miles", 0.0)
    seconds = np.maximum(60, miles * rng.normal(230, 40, size=n) + rng.normal(150, 60, size=n)).astype(np.int64)
    seconds = np.round(seconds * (1.0 + covariate.get("trip_seconds", 0.0))).astype(np.int64)
    fare = 3.25 + 2.25 * miles + 0.004 * seconds + rng.normal(0, 0.5, size=n).clip(-1, 1)
    fare = np.round(fare * (1.0 + covariate.get("fare", 0.0)), 2)
    passengers = rng.choice(np.arange(1, 7), size=n, p=(0.7, 0.15, 0.06, 0.04, 0.03, 0.02))
    passengers = np.clip(np.round(passengers * (1.0 + covariate.get("passenger_count", 0.0))), 1, None).astype(np.int64)

    area_weights = 1.0 / np.arange(1, PICKUP_AREAS + 1) ** 0.8
    # Which areas are busy is a property of the city: fixed by the seed alone, not by the span.
    areas = np.random.default_rng(p.seed).permutation(np.arange(1, PICKUP_AREAS + 1))
    areas = rng.choice(areas, size=n, p=area_weights / area_weights.sum()).astype(np.int64)
    payment = rng.choice(np.array(PAYMENT_TYPES, dtype=object), size=n, p=PAYMENT_WEIGHTS)
    company_weights = np.linspace(2.0, 0.5, len(COMPANIES))
    company = rng.choice(np.array(COMPANIES, dtype=object), size=n, p=company_weights / company_weights.sum())
    if "pickup_area" in covariate:
        areas = _move_category(areas, CATEGORICAL["pickup_area"], covariate["pickup_area"], rng)
    if "payment_type" in covariate:
        payment = _move_category(payment, PAYMENT_TYPES, covariate["payment_type"], rng)
    if "company" in covariate:
        company = _move_category(company, COMPANIES, covariate["company"], rng)
    emails = [f"rider{k:07d}@example.com" for k in rng.integers(0, 10_000_000, size=n)]
    return pd.DataFrame({
        "trip_start_timestamp": timestamps.astype(np.int64),
        "trip_miles": np.round(miles, 2),
        "trip_seconds": seconds,
        "fare": fare,
        "passenger_count": passengers,
        "pickup_area": areas,
        "payment_type": payment,
        "company": company,
        PII_COLUMN: emails,
    })


def _label(df: pd.DataFrame, rng: np.random.Generator, shifts: list[Shift]) -> np.ndarray:
    weights = {term: 1.0 for term in LOGIT_TERMS}
    base = 0.0
    for s in shifts:
        if s.kind == "concept":
            weights[s.feature] *= 1.0 - 2.0 * s.magnitude
            base += s.magnitude
    probability = 1.0 / (1.0 + np.exp(-(base + _logit(df, weights))))
    return (rng.random(len(df)) < probability).astype(np.int64)


def _blank_some(df: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    for column in MAY_BE_MISSING:
        blank = rng.random(len(df)) < rate
        df[column] = df[column].where(~blank, None if df[column].dtype == object else np.nan)
    return df


def _schema_skew(df: pd.DataFrame, shift: Shift, rng: np.random.Generator) -> pd.DataFrame:
    if shift.magnitude >= 1:
        return df.drop(columns=[shift.feature])
    column = df[shift.feature]
    if column.dtype == object:
        codes = {v: i for i, v in enumerate(sorted(column.dropna().unique()))}
        df[shift.feature] = column.map(codes).astype("Int64")
    else:
        suffixed = rng.random(len(df)) < max(shift.magnitude, 1e-9)
        suffixed[0] = True  # at least one row, so the column's type changes for sure
        text = column.map(lambda v: "" if pd.isna(v) else f"{v}").astype(object)
        text[suffixed] = text[suffixed] + " u"
        df[shift.feature] = text
    return df


def _transform(values: pd.Series, magnitude: float) -> pd.Series:
    if values.dtype == object:
        return values.str.upper()
    scaled = values * (1.0 + magnitude)
    return scaled.round().astype(values.dtype) if values.dtype.kind == "i" else scaled.round(2)


def _splits_as_ingest_sees_them(df: pd.DataFrame, ingest: IngestParams) -> np.ndarray:
    # Round-trip through CSV text so the hash sees exactly the values and dtypes ingest reads
    # (ingest parses with pandas.read_csv too).
    reparsed = pd.read_csv(io.StringIO(df.to_csv(index=False)), low_memory=False)
    return assign_splits(reparsed, ingest.split_key, ingest.split_buckets)


def _feature_skew(make_rows, n: int, shift: Shift, ingest: IngestParams) -> pd.DataFrame:
    """Rows whose eval membership does not change under the transformation: eval rows get it,
    train and test rows do not. Draws more rows until there are n."""
    kept, have, attempt = [], 0, 0
    while have < n:
        df = make_rows(attempt, n)
        attempt += 1
        transformed = df.copy()
        transformed[shift.feature] = _transform(df[shift.feature], shift.magnitude)
        before = _splits_as_ingest_sees_them(df, ingest)
        after = _splits_as_ingest_sees_them(transformed, ingest)
        to_eval = after == names.EVAL
        stays_out = (after != names.EVAL) & (before != names.EVAL)
        chosen = pd.concat([transformed[to_eval], df[stays_out]]).sort_index()
        kept.append(chosen)
        have += len(chosen)
    return pd.concat(kept, ignore_index=True).iloc[:n]


def generate_span(p: DataParams, span: int, ingest: IngestParams | None = None) -> pd.DataFrame:
    """One span's rows, a pure function of (params, span)."""
    ingest = ingest or IngestParams()
    shifts = [s for s in p.shifts if s.span == span]
    for s in shifts:
        _check_shift(s)

    def make_rows(attempt: int, n: int) -> pd.DataFrame:
        rng = np.random.default_rng([p.seed, span, attempt])
        df = _draw(rng, n, span, p, shifts)
        df[LABEL] = _label(df, rng, shifts)
        return _blank_some(df, p.missing_rate, rng)

    skew = [s for s in shifts if s.kind == "feature_skew"]
    df = _feature_skew(make_rows, p.rows_per_span, skew[0], ingest) if skew else make_rows(0, p.rows_per_span)
    for s in shifts:
        if s.kind == "new_value":
            moved = np.random.default_rng([p.seed, span, 98]).random(len(df)) < s.magnitude
            df.loc[moved & df[s.feature].notna().to_numpy(), s.feature] = NEW_VALUES[s.feature]
        elif s.kind == "schema_skew":
            df = _schema_skew(df, s, np.random.default_rng([p.seed, span, 99]))
    return df.reset_index(drop=True)


def write_spans(p: DataParams, output_dir: str | Path, ingest: IngestParams | None = None) -> list[Path]:
    """Write every span; stale span files from a previous, longer run are removed so the
    directory (a DVC output) holds exactly what the params describe."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for span in range(1, p.spans + 1):
        path = out / span_file(span)
        tmp = path.with_suffix(".csv.tmp")
        generate_span(p, span, ingest).to_csv(tmp, index=False)
        os.replace(tmp, path)
        written.append(path)
    for stale in set(out.glob("span-*.csv")) - set(written):
        stale.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(params_mod.PARAMS_FILE), help="params.yaml to read")
    parser.add_argument("--output-dir", default="", help="overrides data.output_dir")
    args = parser.parse_args(argv)
    settings = params_mod.load(args.params)
    output_dir = args.output_dir or settings.data.output_dir
    if not os.path.isabs(output_dir):
        output_dir = str(Path(args.params).resolve().parent / output_dir)
    for path in write_spans(settings.data, output_dir, settings.ingest):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
