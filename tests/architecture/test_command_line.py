"""One command-line surface: the `flywheel` command runs what the Makefile's targets run, the
console script names it, and the options every command shares are declared in one place
(flywheel/options.py)."""
from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
import tomllib

from flywheel.params import ROOT
from flywheel_cli import main as cli
from flywheel_cli.commands import COMMANDS

PRODUCT = ("flywheel", "components", "pipelines", "serving", "monitoring", "devserver", "trigger", "flywheel_cli", "tools")
SHARED = ("--params", "--model-repository", "--model-name", "--set", "--verbose")
# Options of the same name that are not the shared ones, each with its reason.
OWN = {
    ("components/train_job.py", "--params"),   # the train section as JSON, passed by the TFJob's launcher
    ("tools/datagen.py", "--params"),       # the DVC generate stage: its code is its dependencies (dvc.yaml)
}
# Targets that run a product module without the `flywheel` command, each with its reason.
NOT_COMMANDS = {"readme-demo"}   # rewrites README.md's demo block: maintenance of the repository
# A make target and the subcommand it runs, where the names differ.
TARGET_COMMAND = {"label-export": "labels", "label-import": "labels"}


def _documented_targets() -> dict[str, str]:
    """Each target `make help` lists, with its recipe."""
    text = (ROOT / "Makefile").read_text()
    targets, name = {}, None
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_-]+):.*## ", line)
        if match:
            name = match.group(1)
            targets[name] = ""
        elif line.startswith("\t") and name:
            targets[name] += line + "\n"
        elif not line.strip() or re.match(r"^\S+:", line):   # a recipe ends at a blank line or another rule
            name = None
    return targets


def test_every_target_that_runs_a_product_module_runs_a_flywheel_subcommand():
    module_run = re.compile(r"\$\(PY\) -m (" + "|".join(PRODUCT) + r")\b")
    ran = {}
    for target, recipe in _documented_targets().items():
        assert target in NOT_COMMANDS or not module_run.search(recipe), f"make {target} runs a module directly"
        for command in re.findall(r"\$\(FLYWHEEL\) ([a-z-]+)", recipe):
            assert command in COMMANDS, f"make {target} runs `flywheel {command}`, which does not exist"
            assert TARGET_COMMAND.get(target, target) == command, f"make {target} runs `flywheel {command}`"
            ran[target] = command
    assert set(ran.values()) == set(COMMANDS), "subcommands no make target runs"


def test_help_lists_the_commands():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--help"]) == 0
    listed = set(re.findall(r"^    ([a-z][a-z-]+)\b", out.getvalue(), re.MULTILINE))
    assert listed == set(COMMANDS)


def test_console_script_names_the_dispatcher():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["flywheel"].partition(":")
    assert getattr(importlib.import_module(module), function) is cli.main


def test_every_command_module_has_a_main():
    for command in COMMANDS.values():
        spec = importlib.util.find_spec(command.module)
        tree = ast.parse(open(spec.origin).read())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), command.module


def test_shared_options_are_declared_once():
    places = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "add_argument" and node.args
                        and isinstance(node.args[0], ast.Constant) and node.args[0].value in SHARED):
                    where = str(path.relative_to(ROOT))
                    if (where, node.args[0].value) not in OWN:
                        places.setdefault(node.args[0].value, []).append(f"{where}:{node.lineno}")
    assert {option: len(found) for option, found in places.items()} == dict.fromkeys(SHARED, 1), places
    assert all(found[0].startswith("flywheel/options.py:") for found in places.values()), places


def test_no_module_imports_a_command_module_for_its_helpers():
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module in ("pipelines.cli", "trigger.__main__"):
                    raise AssertionError(f"{path.relative_to(ROOT)} imports {node.module}")
                if isinstance(node, ast.ImportFrom) and node.module == "pipelines" and \
                        any(alias.name == "cli" for alias in node.names):
                    raise AssertionError(f"{path.relative_to(ROOT)} imports pipelines.cli")
