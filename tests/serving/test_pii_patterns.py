"""The default PII patterns (params.yaml monitoring.pii_patterns) against a corpus of the common
forms of e-mail addresses and phone numbers, and of values that only look like them; and how
often they fire on the default data."""
from __future__ import annotations

import pytest

from flywheel import params as flywheel_params
from flywheel.redaction import Redactor
from flywheel.serving_logs import PII, REDACTED
from tools.datagen import generate_span

PATTERNS = flywheel_params.load().monitoring.pii_patterns

POSITIVES = [
    "a@b.c", "rider@example.com", "first.last+tag@mail.example.co.uk", "x_y-z%1@sub-domain.io",
    "contact me at A.B@C.DE please",
    "5551234567", "555-123-4567", "555.123.4567", "555 123 4567", "(555) 123-4567", "(555)123-4567",
    "+1 555 123 4567", "+15551234567", "1-555-123-4567", "call 312-555-0199 now",
    "+44 20 7946 0958", "+442079460958", "+33 1 23 45 67 89", "+49 (0)30 1234 5678", "+91-98765-43210",
    "+81 3-1234-5678", "+61 2 9876 5432",
]
NEGATIVES = [
    "", "Credit Card", "Cash", "Taxi Affiliation Services", "a@b", "@handle", "user at example dot com",
    "1767600000", "1767600000123", "17031081500", "2024-01-15", "2024-01-15T10:30:00Z", "12:30:45",
    "3.14159", "$12.50", "+5", "+1.5", "+20%", "+1 2 3", "192.168.100.200", "10.0.0.1", "1.2.3",
    "555-1234", "12345", "4111", "v2.3.4567", "order-5551234567x", "0.5551234567",
]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor([], PATTERNS)


@pytest.mark.parametrize("value", POSITIVES)
def test_common_forms_are_redacted(redactor, value):
    flags: set = set()
    redacted = redactor.value(value, flags)
    assert PII in flags and REDACTED in redacted, redacted


@pytest.mark.parametrize("value", NEGATIVES)
def test_lookalikes_are_kept(redactor, value):
    flags: set = set()
    assert redactor.value(value, flags) == value and not flags


def test_nested_and_row_values_are_redacted(redactor):
    flags: set = set()
    rows = redactor.rows([{"note": "a@b.c", "deep": {"phones": ["5551234567", "+44 20 7946 0958"]}, "fare": 3.5}],
                         flags)
    assert rows == [{"note": REDACTED, "deep": {"phones": [REDACTED, REDACTED]}, "fare": 3.5}] and PII in flags


def test_false_positive_rate_on_the_default_data(redactor):
    """Every value of a default span as a client could send it, numbers as strings too. The
    columns ingest treats as PII (rider_email) are all caught; of the others, none is taken for
    PII: 0 false positives in the 45,000 other values of span 1."""
    params = flywheel_params.load()
    frame = generate_span(params.data, 1)
    pii_columns = [c for c in frame.columns if c in params.ingest.pii_columns]
    assert pii_columns
    for column in frame.columns:
        values = [str(v) for v in frame[column].tolist() if v == v]   # NaN: a blank cell, nothing to check
        hits = sum(redactor.value(v, set()) != v for v in values)
        if column in pii_columns:
            assert hits == len(values), column
        else:
            assert hits == 0, f"{column}: {hits} of {len(values)} values taken for PII"
