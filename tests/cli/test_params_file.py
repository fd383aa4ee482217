"""`--params`: the settings file every command reads. A file the user names must exist (a typo is
an error naming the file, exit 2, not a run on defaults); the project's own params.yaml may be
absent (all defaults); `flywheel loop` reads the named file itself and hands it on."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from flywheel import params
from flywheel.params import PARAMS_FILE, ROOT


def flywheel(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flywheel_cli", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "paramz.yaml"
    with pytest.raises(FileNotFoundError, match="paramz.yaml"):
        params.load(missing)


def test_without_the_projects_own_file_every_setting_takes_its_default(tmp_path, monkeypatch):
    absent = tmp_path / "params.yaml"
    monkeypatch.setattr(params, "PARAMS_FILE", absent)
    assert params.load(absent) == params.Params()


@pytest.mark.parametrize("command", [["loop"], ["serve"], ["span"], ["labels", "export"], ["trigger"],
                                     ["lineage"]])
def test_every_command_names_a_missing_params_file_and_exits_2(tmp_path, command):
    missing = str(tmp_path / "paramz.yaml")
    done = flywheel(*command, "--params", missing)
    assert done.returncode == 2, done.stderr[-2000:]
    assert missing in done.stderr and "Traceback" not in done.stderr


def test_the_sidecar_names_a_missing_params_file_and_exits_2(tmp_path):
    missing = str(tmp_path / "paramz.yaml")
    done = subprocess.run([sys.executable, "-m", "monitoring", "--params", missing], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and missing in done.stderr and "Traceback" not in done.stderr


def test_loop_reads_the_named_file(tmp_path):
    """The loop's default traffic comes from the named file's data.output_dir, not params.yaml's."""
    settings = yaml.safe_load(PARAMS_FILE.read_text())
    settings["data"]["output_dir"] = str(tmp_path / "elsewhere")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(settings))
    done = flywheel("loop", "--params", str(other))
    assert done.returncode == 2
    assert f"no traffic file {tmp_path / 'elsewhere' / 'span-003.csv'}" in done.stderr
