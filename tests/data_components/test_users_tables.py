"""Users' own tables through the data steps (pipelines/chain.py): small tables that must not block,
dates as text, odd column names, numbers stored as text, id columns, zero-inflated features."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flywheel import artifacts, names, params, schema_view
from flywheel.errors import DataError
from pipelines import chain


def _settings(label: str, **more) -> params.Params:
    return params.override(params.load(), {"ingest.label": label, "ingest.pii_columns": [], "schema.curated": "",
                                           **more})


def _weather(rows: int, seed: int, dry_share: float = 0.57) -> pd.DataFrame:
    """A small daily-weather-like table: an ISO date, a zero-inflated rainfall, a temperature with a
    unit written after it, a station id, a string label; odd column names."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2023-01-01", periods=rows, freq="D")
    rain = np.where(rng.random(rows) < dry_share, 0.0, rng.exponential(4.0, rows).round(1))
    temperature = np.round(12 + 10 * np.sin(2 * np.pi * dates.dayofyear.to_numpy() / 365) + rng.normal(0, 3, rows), 1)
    return pd.DataFrame({
        "date": dates.strftime("%Y-%m-%d"),
        "rain/mm": rain,
        "temp max": [f"{t}C" for t in temperature],
        "station id": [f"ST-{i:05d}-{rng.integers(1e6)}" for i in range(rows)],
        "wind": rng.choice(["N", "E", "S", "W"], rows),
        "weather": np.where(rain > 2, "rain", np.where(temperature > 15, "sun", "cloud")),
    })


def _validate(tmp_path, frame: pd.DataFrame, label: str, name: str = "t", **chain_kwargs) -> chain.ChainRun:
    data = tmp_path / f"{name}.csv"
    frame.to_csv(data, index=False)
    return chain.run(str(data), tmp_path / name, _settings(label), until="validate", **chain_kwargs)


@pytest.mark.parametrize("rows", [150, 300, 600, 1500])
def test_small_stationary_tables_are_not_blocked(tmp_path, rows):
    """Eval splits of 15 to 150 rows: sampling noise is not skew (it blocked 3 of 5 real tables when
    fixed distance thresholds decided)."""
    run = _validate(tmp_path, _weather(rows, seed=rows), "weather")
    report = run.results["validate"]
    assert not [a for a in report if a["blocking"]], report
    measured = json.loads((run.anomalies / names.MEASUREMENTS_FILE).read_text())
    assert measured["skew"] and not any(r["drifted"] for r in measured["skew"])


def test_a_date_column_is_time_compared_by_its_parts(tmp_path):
    run = _validate(tmp_path, _weather(400, seed=1), "weather")
    assert artifacts.time_columns(run.statistics) == {"date": schema_view.ISO_DATE}
    schema = schema_view.load(run.schema)
    date = next(f for f in schema.feature if f.name == "date")
    assert date.time_domain.string_format == schema_view.ISO_DATE and not date.HasField("domain")
    assert schema_view.by_name(schema)["date"].time and not schema_view.by_name(schema)["date"].categorical
    measured = json.loads((run.anomalies / names.MEASUREMENTS_FILE).read_text())
    compared = {r["feature"] for r in measured["skew"]}
    assert "date" not in compared and "date:weekday" in compared          # 400 days cover every weekday
    assert "date:day_of_year" in compared and "date:month" in compared    # and a whole year


def test_the_next_span_of_dates_is_not_an_anomaly(tmp_path):
    """New dates are what a new span is: no vocabulary of dates, so no out-of-domain anomaly."""
    first = _validate(tmp_path, _weather(400, seed=1), "weather", name="first")
    later = _weather(400, seed=2)
    later["date"] = pd.date_range("2024-06-01", periods=400, freq="D").strftime("%Y-%m-%d")
    run = _validate(tmp_path, later, "weather", name="later", curated_schema=str(first.schema),
                    baseline_stats=str(artifacts.stats_file(first.statistics, names.TRAIN)))
    assert not [a for a in run.results["validate"] if a["kind"] == "schema"], run.results["validate"]


def test_numbers_with_a_unit_and_id_columns_are_reported(tmp_path):
    run = _validate(tmp_path, _weather(400, seed=3), "weather")
    found = {(a["feature"], a["anomaly"]): a for a in run.results["validate"] if a["kind"] == "suspicious"}
    assert ("temp max", "numbers_as_text") in found
    assert "the suffix 'C'" in found[("temp max", "numbers_as_text")]["description"]
    assert ("station id", "near_unique") in found
    assert not any(a["blocking"] for a in found.values())
    # The id column stays in the schema (validated) but is not a model input.
    inputs = {f.name for f in schema_view.features(schema_view.load(run.schema), exclude="weather")}
    assert "station id" not in inputs and {"rain/mm", "wind", "date"} <= inputs


def test_odd_column_names_reach_unique_signature_keys(tmp_path):
    run = _validate(tmp_path, _weather(300, seed=4).assign(**{"rain mm": 1.0}), "weather")
    keys = {f.name: f.signature_key for f in schema_view.features(schema_view.load(run.schema), exclude="weather")}
    assert keys["rain/mm"] == "rain_mm" and keys["rain mm"] == "rain_mm_2" and keys["temp max"] == "temp_max"
    assert len(set(keys.values())) == len(keys)


def test_a_zero_inflated_shift_is_drift(tmp_path):
    """Dry days 57% -> 81%: equal-width buckets saw nothing; the rule sees the zero share move."""
    before = _validate(tmp_path, _weather(1500, seed=5), "weather", name="before")
    after = _validate(tmp_path, _weather(1500, seed=6, dry_share=0.81), "weather", name="after",
                      curated_schema=str(before.schema),
                      baseline_stats=str(artifacts.stats_file(before.statistics, names.TRAIN)))
    drifted = {a["feature"]: a for a in after.results["validate"] if a["kind"] == "drift"}
    assert "rain/mm" in drifted and drifted["rain/mm"]["test"] == "ks+chi2" and not drifted["rain/mm"]["blocking"]
    assert "share of 0" in drifted["rain/mm"]["description"]


def test_a_label_column_that_is_missing_is_named(tmp_path):
    with pytest.raises(DataError, match="label column 'outcome' is missing"):
        _validate(tmp_path, _weather(200, seed=7), "outcome")
