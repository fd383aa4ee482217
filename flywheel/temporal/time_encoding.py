"""Time features inside the model: the raw column in, its parts out, computed in TensorFlow ops so
the exported SavedModel parses ISO-8601 strings (or reads epoch seconds) itself and serving needs
no preprocessing.

The parts are those flywheel/temporal/timeparts.py derives in numpy for drift (the tests hold the two to
the same values): the trend in years, normalised on the train split; the day of the year as a
point on a circle (sine, cosine), so 31 December sits next to 1 January; the weekday one-hot; and,
for columns with a time of day, the hour one-hot. A missing or unparsable value takes the train
split's median time and raises a missing flag, so the model can learn what "no date" means.
"""
from __future__ import annotations

import math

import numpy as np

from flywheel.schema_view import Feature
from flywheel.temporal import timeparts

# What serving may send for a date: YYYY-MM-DD, optionally a time of day (seconds, fraction and
# offset are read past but not used: the hour is the finest part).
ISO_PATTERN = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}.*)?"
_YEAR_DAYS = 365.2425


def width(feature: Feature) -> int:
    """Number of encoded values: trend, sin, cos, missing, 7 weekdays (+24 hours)."""
    return 4 + 7 + (24 if feature.time_of_day else 0)


def reference(values: np.ndarray) -> dict[str, float]:
    """What the layer needs from the train split: the median time (the fill) and the trend's mean
    and standard deviation."""
    seconds = timeparts.parse(values).seconds
    known = seconds[np.isfinite(seconds)]
    if known.size == 0:
        return {"fill_seconds": 0.0, "trend_mean": 1970.0, "trend_sd": 1.0}
    trend = timeparts.parts(known, False)[timeparts.TREND]
    sd = float(trend.std())
    return {"fill_seconds": float(np.median(known)), "trend_mean": float(trend.mean()),
            "trend_sd": sd if sd > 1e-6 else 1.0}


def seconds_and_valid(raw, from_strings: bool):
    """(wall-clock seconds as float64, valid mask) of a batch of raw values, in TensorFlow ops."""
    import tensorflow as tf

    if not from_strings:
        seconds = tf.cast(raw, tf.float64)
        valid = (seconds >= timeparts.EPOCH_MIN) & (seconds < timeparts.EPOCH_MAX)
        return seconds, valid
    text = tf.strings.strip(raw)
    matched = tf.strings.regex_full_match(text, ISO_PATTERN)
    # Every string gets a time-of-day tail, so the fixed-position reads below never run past the end.
    padded = tf.strings.join([tf.where(matched, text, "1970-01-01"), "T00:00"])

    def number(pos, length):
        return tf.strings.to_number(tf.strings.substr(padded, pos, length), tf.int64)

    year, month, day, hour, minute = number(0, 4), number(5, 2), number(8, 2), number(11, 2), number(14, 2)
    valid = matched & (month >= 1) & (month <= 12) & (day >= 1) & (day <= _month_days(year, month)) \
        & (hour <= 23) & (minute <= 59)
    days = days_from_civil(year, month, day)
    seconds = tf.cast(days * 86400 + hour * 3600 + minute * 60, tf.float64)
    return seconds, valid


def _month_days(year, month):
    import tensorflow as tf

    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    lengths = tf.constant([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], tf.int64)
    base = tf.gather(lengths, tf.clip_by_value(month - 1, 0, 11))
    return base + tf.cast(leap & (month == 2), tf.int64)


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), integer ops."""
    y = year - _as_int(month <= 2)
    era = y // 400                                          # floor division, also for years before 0
    yoe = y - era * 400
    shifted_month = (month + 9) % 12                       # March = 0 ... February = 11
    doy = (153 * shifted_month + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days):
    """(year, day of year 1-366) of days since 1970-01-01, integer ops."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy_from_march = doe - (365 * yoe + yoe // 4 - yoe // 100)
    month = (5 * doy_from_march + 2) // 153
    month = month + 3 - 12 * _as_int(month >= 10)
    year = yoe + era * 400 + _as_int(month <= 2)
    january_first = days_from_civil(year, _ones(year), _ones(year))
    return year, days - january_first + 1


def _ones(like):
    import tensorflow as tf

    return tf.ones_like(like)


def _as_int(condition):
    import tensorflow as tf

    return tf.cast(condition, tf.int64)


def parts(seconds):
    """{trend, day_of_year, weekday, hour} of float64 wall-clock seconds, in TensorFlow ops (the
    values timeparts.parts gives in numpy)."""
    import tensorflow as tf

    days = tf.cast(tf.math.floor(seconds / timeparts.DAY), tf.int64)
    year, day_of_year = civil_from_days(days)
    start = tf.cast(days_from_civil(year, _ones(year), _ones(year)), tf.float64) * timeparts.DAY
    end = tf.cast(days_from_civil(year + 1, _ones(year), _ones(year)), tf.float64) * timeparts.DAY
    return {
        timeparts.TREND: tf.cast(year, tf.float64) + (seconds - start) / (end - start),
        timeparts.DAY_OF_YEAR: day_of_year,
        timeparts.WEEKDAY: (days + 3) % 7,                 # 1970-01-01 was a Thursday
        timeparts.HOUR: tf.cast(tf.math.floor((seconds - tf.cast(days, tf.float64) * timeparts.DAY) / 3600), tf.int64),
    }


def layer(feature: Feature, train_values: np.ndarray):
    """A Keras layer turning the raw column into width(feature) floats."""
    import keras
    import tensorflow as tf

    ref = reference(train_values)
    from_strings = feature.kind == "string"
    has_time = feature.time_of_day

    class TimeEncoding(keras.layers.Layer):
        def call(self, raw):
            seconds, valid = seconds_and_valid(raw, from_strings)
            seconds = tf.where(valid, seconds, tf.constant(ref["fill_seconds"], tf.float64))
            p = parts(seconds)
            angle = 2 * math.pi * (tf.cast(p[timeparts.DAY_OF_YEAR], tf.float64) - 1) / _YEAR_DAYS
            columns = [(p[timeparts.TREND] - ref["trend_mean"]) / ref["trend_sd"], tf.sin(angle), tf.cos(angle),
                       1.0 - tf.cast(valid, tf.float64)]
            encoded = [tf.stack([tf.cast(c, tf.float32) for c in columns], axis=-1),
                       tf.one_hot(p[timeparts.WEEKDAY], 7, dtype=tf.float32)]
            if has_time:
                encoded.append(tf.one_hot(p[timeparts.HOUR], 24, dtype=tf.float32))
            return tf.concat(encoded, axis=-1)

        def compute_output_shape(self, input_shape):
            return (*input_shape, width(feature))

    return TimeEncoding(name=f"{feature.signature_key}_time")
