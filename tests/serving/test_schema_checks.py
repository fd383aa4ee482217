"""Serving-time schema checks against the SERVING environment, counted per feature and kind."""
from __future__ import annotations

import math
from collections import Counter

from flywheel.schema_view import Feature
from monitoring.schema_check import UNKNOWN_FEATURE, check_rows

FEATURES = {
    "fare": Feature("fare", "float", minimum=0.0, maximum=500.0),
    "passenger_count": Feature("passenger_count", "int", minimum=1, maximum=9),
    "payment_type": Feature("payment_type", "string", values=frozenset({"Cash", "Credit Card"})),
}
GOOD = {"fare": 12.5, "passenger_count": 2, "payment_type": "Cash"}


def test_clean_row_has_no_anomalies():
    found, clean = check_rows([GOOD], FEATURES)
    assert found == Counter() and clean == [GOOD]


def test_each_kind_is_counted_per_feature():
    rows = [
        {"passenger_count": 2, "payment_type": "Cash"},                         # missing fare
        dict(GOOD, big_tipper=1, rider_email="x@y.z"),                          # two unknown keys
        dict(GOOD, passenger_count="two", fare=True),                           # wrong types
        dict(GOOD, payment_type="Bitcoin", fare=-3.0, passenger_count=40),      # out of domain
        dict(GOOD, fare=math.nan),                                              # NaN
        dict(GOOD, fare=None),                                                  # null counts as missing
        dict(GOOD, passenger_count=2.5),                                        # float for an int feature
    ]
    found, clean = check_rows(rows, FEATURES)
    assert found == Counter({("fare", "missing"): 2, (UNKNOWN_FEATURE, "unknown"): 2,
                             ("passenger_count", "wrong_type"): 2, ("fare", "wrong_type"): 1,
                             ("payment_type", "out_of_domain"): 1, ("fare", "out_of_domain"): 1,
                             ("passenger_count", "out_of_domain"): 1, ("fare", "nan"): 1})
    assert "passenger_count" not in clean[2] and "fare" not in clean[4]   # unusable values stay out of drift
    assert clean[3]["payment_type"] == "Bitcoin"                          # real served values stay in
