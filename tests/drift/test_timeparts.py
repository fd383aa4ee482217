"""Time columns: recognition, parsing (dates, datetimes, epoch seconds, garbage, missing), parts."""
import datetime as dt

import numpy as np
import pytest

from flywheel import drift, params
from flywheel.temporal import timeparts as tp


def dates(start: str, days: int, step: int = 1) -> np.ndarray:
    first = dt.date.fromisoformat(start)
    return np.array([(first + dt.timedelta(days=i)).isoformat() for i in range(0, days, step)], dtype=object)


def test_iso_dates_are_recognised_and_parsed():
    values = dates("2024-01-01", 400)
    assert tp.detect(values) == tp.TimeKind(tp.DATE, False)
    parsed = tp.parse(values)
    assert parsed.missing == parsed.invalid == 0
    assert parsed.seconds[0] == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def test_datetimes_with_fractions_and_offsets_keep_the_wall_clock():
    values = np.array(["2026-03-05T08:30:00+05:00", "2026-03-05 23:59:59.25", "2026-03-09T00:00Z",
                       "2026-03-10T07:15", "2026-03-10T07:15:00-0330"], dtype=object)
    assert tp.detect(values) == tp.TimeKind(tp.DATETIME, True)
    parsed = tp.parse(values)
    expected = [dt.datetime(2026, 3, 5, 8, 30), dt.datetime(2026, 3, 5, 23, 59, 59, 250000),
                dt.datetime(2026, 3, 9), dt.datetime(2026, 3, 10, 7, 15), dt.datetime(2026, 3, 10, 7, 15)]
    assert parsed.seconds.tolist() == [e.replace(tzinfo=dt.timezone.utc).timestamp() for e in expected]
    got = tp.parts(parsed.seconds, has_time=True)
    assert got[tp.HOUR].tolist() == [8, 23, 0, 7, 7]
    assert got[tp.WEEKDAY].tolist() == [e.weekday() for e in expected]


def test_datetimes_at_midnight_carry_no_time_of_day():
    values = np.array(["2026-03-05T00:00:00", "2026-03-06T00:00:00"], dtype=object)
    assert tp.detect(values) == tp.TimeKind(tp.DATETIME, False)
    assert tp.HOUR not in tp.parts(tp.parse(values).seconds, has_time=False)


def test_epoch_seconds_are_recognised_and_other_numbers_are_not():
    seconds = np.array([1.7e9, 1.7e9 + 5400, np.nan])
    assert tp.detect(seconds) == tp.TimeKind(tp.EPOCH_SECONDS, True)
    assert tp.detect(np.array([1_700_006_400, 1_700_092_800])) == tp.TimeKind(tp.EPOCH_SECONDS, False)
    assert tp.detect(np.array([3, 7, 1_700_000_000])) is None        # counts or ids
    assert tp.detect(np.array([5e9])) is None                         # after 2100
    parsed = tp.parse(np.array([1.7e9, np.nan, np.inf]))
    assert (parsed.missing, parsed.invalid) == (1, 1) and np.isnan(parsed.seconds[1:]).all()


def test_garbage_and_missing_values_are_counted_not_guessed():
    values = np.array(["2026-02-30", "2026-13-01", "2026-01-01T25:00", "soon", "05/03/2026", "2026",
                       None, np.nan, "", "  ", "2026-01-01", b"2026-01-02", 42], dtype=object)
    parsed = tp.parse(values)
    assert parsed.missing == 4
    assert parsed.invalid == 7
    assert np.isfinite(parsed.seconds).sum() == 2
    assert tp.detect(values) is None                      # 2 of 9 present values parse


def test_a_column_of_mostly_dates_with_a_few_bad_values_is_still_time():
    values = dates("2025-01-01", 100).tolist()
    values[3] = "n/a"
    assert tp.detect(np.array(values, dtype=object)) == tp.TimeKind(tp.DATE, False)
    values[5] = values[7] = values[9] = values[11] = values[13] = "n/a"
    assert tp.detect(np.array(values, dtype=object)) is None  # 6% unparseable


def test_text_columns_are_not_time():
    assert tp.detect(np.array(["north", "south"], dtype=object)) is None
    assert tp.detect(np.array([None, np.nan], dtype=object)) is None
    assert tp.detect(np.array(["x" * 10_000, "2026-01-01" + "0" * 100], dtype=object)) is None


def test_parts_match_the_standard_library_over_random_times():
    rng = np.random.default_rng(1)
    seconds = rng.integers(0, 4_102_444_800, 2000).astype(float)
    got = tp.parts(seconds, has_time=True)
    for i in range(0, 2000, 37):
        t = dt.datetime.fromtimestamp(seconds[i], dt.timezone.utc)
        start = dt.datetime(t.year, 1, 1, tzinfo=dt.timezone.utc)
        length = (dt.datetime(t.year + 1, 1, 1, tzinfo=dt.timezone.utc) - start).total_seconds()
        assert got[tp.TREND][i] == pytest.approx(t.year + (t - start).total_seconds() / length, abs=1e-9)
        assert (got[tp.DAY_OF_YEAR][i], got[tp.MONTH][i], got[tp.WEEKDAY][i], got[tp.HOUR][i]) == (
            t.timetuple().tm_yday, t.month, t.weekday(), t.hour)


def test_parts_keep_missing_times_missing():
    got = tp.parts([np.nan, 0.0], has_time=False)
    assert set(got) == {tp.TREND, tp.DAY_OF_YEAR, tp.MONTH, tp.WEEKDAY}
    assert all(np.isnan(v[0]) for v in got.values())
    assert got[tp.TREND][1] == 1970.0 and got[tp.WEEKDAY][1] == 3      # a Thursday


def test_drift_parts_are_the_cycles_the_reference_covers():
    week = tp.parse(dates("2026-01-05", 7)).seconds
    year = tp.parse(dates("2025-01-01", 365)).seconds
    assert tp.drift_parts(week, has_time=False) == (tp.WEEKDAY,)
    assert tp.drift_parts(tp.parse(dates("2026-01-05", 6)).seconds, has_time=False) == ()
    assert tp.drift_parts(year, has_time=False) == (tp.DAY_OF_YEAR, tp.MONTH, tp.WEEKDAY)
    morning = np.arange(8 * 3600, 12 * 3600, 600, dtype=float) + 1.7e9 // 86400 * 86400
    assert tp.HOUR not in tp.drift_parts(morning, has_time=True)
    assert tp.part_column("pickup date", tp.WEEKDAY) == "pickup date:weekday"


def test_weekday_drift_is_seen_on_the_part_not_per_date():
    """Every date of a later span is new, which is no drift; a move to weekends is."""
    settings = params.load().drift

    def weekdays(values):                                 # 20 rows a day
        return np.repeat(tp.parts(tp.parse(values).seconds, has_time=False)[tp.WEEKDAY], 20)

    profile = drift.categorical_profile(weekdays(dates("2026-01-05", 28)))
    later = dates("2026-03-02", 28)
    weekends = np.array([d for d in dates("2026-03-02", 120) if dt.date.fromisoformat(d).weekday() >= 5], dtype=object)
    same = drift.compare({"day": profile}, {"day": profile.summarize(weekdays(later))}, settings)[0]
    moved = drift.compare({"day": profile}, {"day": profile.summarize(weekdays(weekends))}, settings)[0]
    assert not same.drifted and same.linf == 0.0
    assert moved.drifted and moved.p_corrected < 1e-10
