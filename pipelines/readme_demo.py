"""README.md's demo block from a `make run` log: `make readme-demo` runs the pipeline on the
default data into a fresh model repository and then writes (or, with --check, compares) the
README's summary block.

    python -m pipelines.readme_demo build/readme-demo/run.log README.md [--check] [--repository R]

The block is the first fenced block after the paragraph that starts with "**`make run`**". The
run's summary is copied as printed, with the worktree's absolute path removed, run ids shortened
to "flywheel-training-…" and the demo's repository shown as `make run`'s own
(model_repository/). --check compares only the decisions (per span: blessed, pushed as; the
repository's labels) and exits 1 naming each difference; timings and figures may differ.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from flywheel.params import ROOT

HEADER = "== Flywheel run summary =="
ANCHOR = "**`make run`**"
RUN_ID = re.compile(r"flywheel-training-[0-9a-z-]+")
FENCE = "```"


def summary_block(log: str, repository: str) -> list[str]:
    """The last run summary of the log, cleaned up for the README."""
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == HEADER]
    if not starts:
        raise ValueError(f"no '{HEADER}' in the log: did `make run` finish?")
    block = []
    for line in lines[starts[-1]:]:
        if not line.strip():
            break
        block.append(line)
    root = str(ROOT) + "/"
    text = "\n".join(block).replace(root, "")
    if repository:
        text = text.replace(repository.replace(root, "").rstrip("/"), "model_repository")
    return RUN_ID.sub("flywheel-training-…", text).splitlines()


def decisions(block: list[str]) -> list[str]:
    """What the demo promises: each span's blessed and pushed columns, and the labels."""
    header = next((line for line in block if line.startswith("data ")), "")
    columns = {name: header.index(name) for name in ("blessed", "infra p99", "pushed", "time") if name in header}
    found = []
    for line in block:
        if re.match(r"span-\d+\.\w+\s", line) and len(columns) == 4:
            found.append(f"{line.split()[0]}: blessed {line[columns['blessed']:columns['infra p99']].strip()}, "
                         f"pushed {line[columns['pushed']:columns['time']].strip()}")
        if line.startswith("model repository:"):
            found.append(re.sub(r"^model repository: \S+\s+", "", line).strip())
    return found


def readme_block(readme: str) -> tuple[int, int]:
    """(first, last) line numbers of the demo block's content in the README."""
    lines = readme.splitlines()
    anchor = next((i for i, line in enumerate(lines) if line.startswith(ANCHOR)), None)
    if anchor is None:
        raise ValueError(f"README.md has no paragraph starting with {ANCHOR}")
    opening = next(i for i in range(anchor, len(lines)) if lines[i].startswith(FENCE))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith(FENCE))
    return opening + 1, closing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log")
    parser.add_argument("readme")
    parser.add_argument("--check", action="store_true", help="compare the decisions only; write nothing")
    parser.add_argument("--repository", default="", help="the demo's model repository, shown as model_repository")
    args = parser.parse_args(argv)
    block = summary_block(Path(args.log).read_text(errors="replace"), args.repository)
    readme = Path(args.readme).read_text()
    first, last = readme_block(readme)
    lines = readme.splitlines()
    if args.check:
        shown, printed = decisions(lines[first:last]), decisions(block)
        if shown == printed:
            print(f"{args.readme}: the demo's decisions are what `make run` printed: {'; '.join(printed)}")
            return 0
        print(f"{args.readme}: the demo block differs from what `make run` printed:", file=sys.stderr)
        for kind, values in (("README", shown), ("make run", printed)):
            print(f"  {kind}: {'; '.join(values) or '(none)'}", file=sys.stderr)
        print("  rewrite it with `make readme-demo`", file=sys.stderr)
        return 1
    Path(args.readme).write_text("\n".join(lines[:first] + block + lines[last:]) + "\n")
    print(f"{args.readme}: demo block rewritten from {args.log}: {'; '.join(decisions(block))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
