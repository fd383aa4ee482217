"""`flywheel COMMAND [ARGS]`: the dispatcher (the console script in pyproject.toml).

`flywheel COMMAND --help` prints the command's own options.
"""
from __future__ import annotations

import argparse
import sys

from flywheel_cli.commands import COMMANDS


def parser() -> argparse.ArgumentParser:
    """The top-level help: the commands and what each does (their options are their modules')."""
    p = argparse.ArgumentParser(prog="flywheel", description="Flywheel: the training pipeline, its data, "
                                "serving, monitoring and retraining.", epilog="flywheel COMMAND --help: its options")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        sub.add_parser(command.name, help=command.help, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        parser().print_help(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        parser().error(f"unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})")
    return command.run(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
