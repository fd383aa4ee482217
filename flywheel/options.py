"""The options the commands share, declared once, and how their defaults resolve.

    --params FILE              params.yaml to read (default: the project's)
    --model-repository PATH    default: push.model_repository in that file
    --model-name NAME          default: push.model_name in that file
    --set KEY=VALUE            a setting (section.key=value) or a run-level pipeline parameter; repeatable
    --verbose                  more output

The model options default to None, not to a value read while the parser is built: `model` resolves
them against the settings the command loaded (`load`), so `--params` and `--set push.*=` count.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys

import yaml

from flywheel import params as params_module

# Pipeline parameters a `--set` may name without a section (pipelines/training_pipeline.py).
RUN_ARGUMENTS = ("data_rev", "force_push", "trigger", "train_accelerator_type", "train_accelerator_limit",
                 "train_node_selector", "train_tolerations")
SET_HELP = "a setting: section.key=value (e.g. train.epochs=20) or a run-level pipeline parameter (repeatable)"


def add_params(parser: argparse.ArgumentParser, help: str = "params.yaml to read") -> None:
    parser.add_argument("--params", default=str(params_module.PARAMS_FILE), help=help)


def add_model(parser: argparse.ArgumentParser, *, required: bool = False,
              repository_help: str = "local path, gs:// or s3:// (default: push.model_repository in params.yaml)",
              name_help: str = "default: push.model_name in params.yaml") -> None:
    parser.add_argument("--model-repository", required=required, default=None, help=repository_help)
    parser.add_argument("--model-name", default=None, help=name_help)


def add_sets(parser: argparse.ArgumentParser, help: str = SET_HELP) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_verbose(parser: argparse.ArgumentParser, help: str = "more output on the console") -> None:
    parser.add_argument("--verbose", action="store_true", help=help)


def parse_sets(pairs: list[str] | None) -> dict:
    """`--set key=value` assignments: `section.key=value` for a params.yaml setting, or a run-level
    pipeline parameter (force_push, train_accelerator_type, ...). A value is read as JSON when
    it parses (numbers, lists, objects, true/false), else as a string:
    --set train.epochs=20 --set 'train_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}'."""
    parsed = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value, got {pair!r}")
        if "." not in key and key not in RUN_ARGUMENTS:
            raise ValueError(f"--set {key}: not a params.yaml setting (section.key) nor one of {list(RUN_ARGUMENTS)}")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def settings_and_run_arguments(params: params_module.Params, sets: dict,
                               trigger: str = "manual") -> tuple[params_module.Params, dict]:
    """The settings with `section.key` overrides applied, and the run-level arguments (the
    trigger recorded in the run's lineage defaults to this command and who ran it)."""
    dotted = {k: v for k, v in sets.items() if "." in k}
    run_arguments = {k: v for k, v in sets.items() if "." not in k}
    run_arguments.setdefault("trigger", {"kind": trigger, "by": getpass.getuser(), "command": " ".join(sys.argv[1:3])})
    return params_module.override(params, dotted), run_arguments


def load(args: argparse.Namespace) -> params_module.Params:
    """The settings a command runs with: its --params file (default params.yaml). A file that is
    missing, unreadable or invalid ends the command: its name and the reason on stderr, exit 2."""
    path = getattr(args, "params", None) or params_module.PARAMS_FILE
    try:
        return params_module.load(path)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"error: --params {path}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def model(args: argparse.Namespace, settings: params_module.Params) -> tuple[str, str]:
    """The model repository and name: the flags when given, else the settings' push: section."""
    return (getattr(args, "model_repository", None) or settings.push.model_repository,
            getattr(args, "model_name", None) or settings.push.model_name)
