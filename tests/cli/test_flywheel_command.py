"""The `flywheel` command: dispatch to the modules, the shared options' defaults, and `serve`."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
import yaml

from flywheel import options
from flywheel.params import PARAMS_FILE, ROOT
from flywheel_cli import main as cli
from flywheel_cli import serve
from flywheel_cli.commands import COMMANDS
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, push_version, wait_http


@pytest.fixture
def other_params(tmp_path):
    """A params.yaml whose push: section names another repository and model."""
    settings = yaml.safe_load(PARAMS_FILE.read_text())
    settings["push"].update(model_repository=str(tmp_path / "elsewhere"), model_name="other_model")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    options.add_params(p)
    options.add_model(p)
    options.add_sets(p)
    options.add_verbose(p)
    return p


def test_model_defaults_come_from_the_params_file_the_command_reads(other_params, tmp_path):
    args = _parser().parse_args(["--params", str(other_params)])
    assert options.model(args, options.load(args)) == (str(tmp_path / "elsewhere"), "other_model")
    args = _parser().parse_args(["--params", str(other_params), "--model-name", "mine"])
    assert options.model(args, options.load(args)) == (str(tmp_path / "elsewhere"), "mine")


def test_sets_are_read_as_json_when_they_parse():
    args = _parser().parse_args(["--set", "train.epochs=20", "--set", "ingest.label=tip", "--set", "force_push=true"])
    assert options.parse_sets(args.set) == {"train.epochs": 20, "ingest.label": "tip", "force_push": True}
    with pytest.raises(ValueError, match="not a params.yaml setting"):
        options.parse_sets(["epochs=20"])
    with pytest.raises(ValueError, match="key=value"):
        options.parse_sets(["train.epochs"])


def test_a_subcommand_runs_its_module_with_the_shared_options(tmp_path, capsys):
    code = cli.main(["lineage", "--model-repository", str(tmp_path), "--model-name", "absent"])
    assert code == 2
    assert f"no version  of absent in {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_prints_its_own_help_under_its_name(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: flywheel {name} ")


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["nope"])
    assert exit_.value.code == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_the_package_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "flywheel_cli", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "schema-update" in result.stdout


def test_serve_refuses_a_model_never_pushed(tmp_path, capsys):
    assert cli.main(["serve", "--model-repository", str(tmp_path), "--model-name", "absent"]) == 1
    assert "No model pushed yet" in capsys.readouterr().err


def test_serve_starts_the_model_server_and_the_sidecar_on_the_same_model(tmp_path):
    args = serve.parser().parse_args(["--rest-port", "9501", "--grpc-port", "0", "--port", "9080",
                                      "--feature-server", "http://127.0.0.1:6566"])
    server, sidecar = serve.commands(args, str(tmp_path), "m")
    model = ["--model-repository", str(tmp_path), "--model-name", "m", "--params", str(PARAMS_FILE)]
    assert server[1:3] == ["-m", "devserver"] and server[-len(model):] == model
    assert server[server.index("--rest-port") + 1] == "9501" and server[server.index("--grpc-port") + 1] == "0"
    assert sidecar[1:3] == ["-m", "monitoring"]
    assert sidecar[sidecar.index("--upstream") + 1] == "http://127.0.0.1:9501"
    assert sidecar[sidecar.index("--port") + 1] == "9080"
    assert sidecar[sidecar.index("--feature-server") + 1] == "http://127.0.0.1:6566"
    assert all(a in sidecar for a in model)


@pytest.mark.parametrize("stop", ["term to serve", "ctrl-c to the group"])
def test_serve_starts_both_servers_and_stops_them(tmp_path, exported_versions, stop):
    repository = tmp_path / "repository"
    push_version(exported_versions, repository, 1)
    settings = yaml.safe_load(PARAMS_FILE.read_text())
    settings["monitoring"].update(log_dir=str(tmp_path / "local"), log_destination=str(tmp_path / "logs"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    rest, sidecar = free_port(), free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "flywheel_cli", "serve", "--params", str(tmp_path / "params.yaml"),
                             "--model-repository", str(repository), "--model-name", MODEL_NAME,
                             "--rest-port", str(rest), "--grpc-port", "0", "--port", str(sidecar)],
                            cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{sidecar}/v1/models/{MODEL_NAME}", timeout_s=120,
                  gone=lambda: proc.poll() is not None)
        wait_http(f"http://127.0.0.1:{rest}/v1/models/{MODEL_NAME}", timeout_s=30)
        if stop == "term to serve":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        for port in (rest, sidecar):   # serve returns once both servers have exited
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
