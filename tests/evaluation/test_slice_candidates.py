"""Slices proposed for users' tables (flywheel/evaluation/slice_candidates.py): when none of the configured
slice columns exist, the fairness summary, the model card and the data card name the columns
that could be slices, why, and the exact SET= to use."""
import numpy as np
import pandas as pd
from tensorflow_metadata.proto.v0 import statistics_pb2

from flywheel import names
from flywheel.drift.profiles import CategoricalProfile
from flywheel.evaluation import fairness
from flywheel.options import parse_sets
from flywheel.params import EvaluateParams
from flywheel.report import data_card, model_card


def mortgage_table(rows=800, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "loan_amount": rng.gamma(3.0, 50_000, rows),                       # numeric: not a slice
        "application_id": [f"a{i}" for i in range(rows)],                   # one value per row: not a slice
        "lender": rng.choice([f"bank {i}" for i in range(6)], rows),
        "applicant_sex": rng.choice(["female", "male", "not given"], rows, p=[0.4, 0.5, 0.1]),
        "co_applicant": rng.random(rows) < 0.3,
        "rare_code": rng.choice(["x", "y"], rows, p=[0.99, 0.01]),         # one group too small to judge
        "denied": rng.integers(0, 2, rows)})


def test_a_users_table_without_the_configured_columns_gets_slices_proposed():
    table = mortgage_table()
    scores = {names.OUTPUT_SCORE: np.random.default_rng(1).random(len(table))}
    report = fairness.assess(table, names.BINARY, table["denied"].to_numpy(), scores, EvaluateParams(), label="denied")
    assert report.slices == [] and report.passed
    columns = [c["column"] for c in report.candidates]
    assert columns[0] == "applicant_sex" and set(columns) == {"applicant_sex", "lender", "co_applicant"}
    why = {c["column"]: c["why"] for c in report.candidates}
    assert "protected group" in why["applicant_sex"] and why["co_applicant"].startswith("boolean")
    summary = report.summary()
    assert "not in the data: payment_type, company, trip_miles" in summary
    setting = summary.split("SET='")[1].split("'")[0]
    # The SET= the summary names is one the command line reads as the list of columns.
    assert parse_sets([setting]) == {"evaluate.slice_features": ["applicant_sex", "lender", "co_applicant"]}
    card = "\n".join(model_card.fairness_section(report.to_dict(), "auc"))
    assert "`applicant_sex`: categorical with 3 values" in card


def test_the_data_card_proposes_the_same_kind_of_columns_from_the_training_profiles():
    statistics = {}
    for split, rows in (("train", 4000), ("test", 800)):
        proto = statistics_pb2.DatasetFeatureStatisticsList()
        proto.datasets.add().num_examples = rows
        statistics[split] = proto
    profiles = {"applicant_sex": CategoricalProfile(("female", "male", "not given"), np.array([1600.0, 2000, 400, 0])),
                "denied": CategoricalProfile(("0", "1"), np.array([2000.0, 2000, 0]))}
    proposal = data_card.proposed_slices(profiles, "denied", statistics)
    assert proposal["configured"] == [] and [c["column"] for c in proposal["candidates"]] == ["applicant_sex"]
    lines = "\n".join(data_card._slice_lines(proposal))
    assert "fairness is not assessed" in lines
    assert """SET='evaluate.slice_features=["applicant_sex"]'""" in lines
    assert "at least 30 test rows" in proposal["candidates"][0]["why"]


def test_a_column_marked_sensitive_stays_in_the_data_but_is_no_model_input():
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.schema import add_environments
    from flywheel import schema_view
    from flywheel.errors import DataError

    schema = schema_pb2.Schema()
    for name in ("applicant_sex", "lender", "loan_amount", "denied"):
        schema.feature.add(name=name)
    add_environments(schema, "denied", "schema.pbtxt", sensitive=("applicant_sex",))
    inputs = [f.name for f in schema_view.features(schema, names.ENV_SERVING, exclude="denied")]
    assert inputs == ["lender", "loan_amount"]
    assert "applicant_sex" in [f.name for f in schema_view.features(schema, names.ENV_TRAINING)]
    try:
        add_environments(schema, "denied", "schema.pbtxt", sensitive=("race",))
        raise AssertionError("an unknown sensitive column must be an error")
    except DataError as error:
        assert "race" in str(error) and "sensitive_features" in str(error)
