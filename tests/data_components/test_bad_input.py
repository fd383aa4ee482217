"""Each kind of bad input: non-zero exit, one paragraph naming file, column and problem,
and nothing written for the next step."""
import subprocess

import pytest

from pipelines import validate_cli
from flywheel.errors import DataError

from tests.support.spans import CURATED, LABEL, PYTHON, span, write_span

GOOD = "a,b,big_tipper\n1,x,0\n2,y,1\n"


def _fails(data, out, capsys, *, previous="", schema="", label=LABEL) -> str:
    """Run the local entry point; it must exit 1 and leave no examples/statistics behind."""
    argv = [str(data), "--label", label, "--out", str(out)]
    argv += ["--previous", str(previous)] if previous else []
    argv += ["--schema", str(schema)] if schema else []
    assert validate_cli.main(argv) == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("FAILED: Bad data in") and "\n" not in message, message
    assert str(data) in message
    return message


def _nothing_written(out):
    assert not (out / "current" / "examples").exists() and not (out / "current" / "statistics").exists()
    assert not list(out.rglob("*.tmp-*"))


@pytest.mark.parametrize("name, content, expected", [
    ("missing.csv", None, "does not exist"),
    ("empty.csv", b"", "the file is empty"),
    ("blank.csv", b"\n\n", "only blank lines"),
    ("header_only.csv", b"a,b,big_tipper\n", "header but no data rows"),
    ("no_header.csv", b"1,2.5,0\n2,3.5,1\n", "no header row"),
    ("latin1.csv", "a,city,big_tipper\n1,Zürich,0\n2,Köln,1\n".encode("latin1"), "not UTF-8"),
    ("duplicated.csv", b"a,a,big_tipper\n1,2,0\n3,4,1\n", "more than once"),
    ("ragged.csv", b"a,b,big_tipper\n1,2,0\n3,4,1,9\n", "not a well-formed CSV"),
    ("broken.parquet", b"PAR1 this is not parquet", "not a readable Parquet file"),
])
def test_unreadable_files(tmp_path, capsys, name, content, expected):
    data = tmp_path / name
    if content is not None:
        data.write_bytes(content)
    message = _fails(data, tmp_path / "out", capsys)
    assert expected in message
    _nothing_written(tmp_path / "out")


def test_encoding_error_names_line_and_column(tmp_path, capsys):
    data = tmp_path / "latin1.csv"
    data.write_bytes("a,city,big_tipper\n1,Zürich,0\n2,Köln,1\n".encode("latin1"))
    message = _fails(data, tmp_path / "out", capsys)
    assert "column 'city'" in message and "byte 0xfc on line 2" in message


def test_missing_label_column(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text(GOOD.replace("big_tipper", "tip"))
    message = _fails(data, tmp_path / "out", capsys)
    assert f"column '{LABEL}'" in message and "is missing" in message and "['a', 'b', 'tip']" in message
    _nothing_written(tmp_path / "out")


def test_single_valued_label(tmp_path, capsys):
    data = write_span(tmp_path, span(1, rows=200).assign(big_tipper=1))
    message = _fails(data, tmp_path / "out", capsys)
    assert f"column '{LABEL}'" in message and "single value (1) in all 200 rows" in message
    _nothing_written(tmp_path / "out")


def test_too_few_rows_to_split(tmp_path, capsys):
    data = tmp_path / "tiny.csv"
    data.write_text(GOOD)
    assert "split is empty" in _fails(data, tmp_path / "out", capsys)
    _nothing_written(tmp_path / "out")


@pytest.mark.parametrize("change, column, anomaly", [
    (lambda df: df.assign(trip_miles=df["trip_miles"].map(lambda v: f"{v} mi")), "trip_miles", "type"),
    (lambda df: df.assign(passengers_text=df["passenger_count"].astype(str) + "p"), "passengers_text",
     "SCHEMA_NEW_COLUMN"),
    (lambda df: df.drop(columns=["fare"]), "fare", "SCHEMA_MISSING_COLUMN"),
])
def test_schema_changes_against_previous_file(tmp_path, capsys, change, column, anomaly):
    previous = write_span(tmp_path, span(1, rows=2000), "previous.csv")
    data = write_span(tmp_path, change(span(2, rows=2000)), "current.csv")
    message = _fails(data, tmp_path / "out", capsys, previous=previous)
    assert f"feature '{column}'" in message and f"column '{column}'" in message
    assert anomaly.lower() in message.lower()
    assert (tmp_path / "out" / "current" / "anomalies" / "report.json").exists()   # the report is kept to read


def test_type_change_against_the_curated_schema(tmp_path, capsys):
    df = span(2, rows=2000)
    data = write_span(tmp_path, df.assign(pickup_area="area-" + df["pickup_area"].astype(str)))
    message = _fails(data, tmp_path / "out", capsys, schema=CURATED)
    assert "feature 'pickup_area'" in message and "INT" in message


def test_exit_status_of_the_command(tmp_path):
    """The entry point as `make validate` runs it: exit 1, the paragraph on stderr."""
    result = subprocess.run([PYTHON, "-m", "pipelines.validate_cli", str(tmp_path / "nope.csv"), "--label", LABEL],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert f"Bad data in {tmp_path / 'nope.csv'}: the file does not exist" in result.stderr


def test_data_error_message_is_one_paragraph():
    error = DataError("f.csv", "the label has a single value (1)", column="y", hint="Fix it.")
    assert str(error) == "Bad data in column 'y' of f.csv: the label has a single value (1). Fix it."


def test_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    from components import ingest
    df = ingest.parse_csv(b"\xef\xbb\xbfa,big_tipper\r\n1,0\r\n2,1\r\n", "bom.csv")
    assert list(df.columns) == ["a", "big_tipper"]


def test_corrupt_baseline_statistics_are_named(tmp_path, clean_stats):
    from components import schema, validate
    baseline = tmp_path / "baseline_stats.pb"
    baseline.write_bytes(b"\xff not a proto")
    schema.run(clean_stats[0], tmp_path / "schema", LABEL, CURATED)
    with pytest.raises(DataError, match=f"Bad data in {baseline}: the baseline statistics are not usable"):
        validate.run(clean_stats[0], tmp_path / "schema", tmp_path / "anomalies", baseline_stats=str(baseline))
