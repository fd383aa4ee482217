"""Every command README.md and docs/*.md show exists: each `make <target>` in code is a Makefile
target, each `python -m <module>` a module with a main (or a package with a `__main__`), each
repository path in code a file or folder of the repository.

Code is every fenced block and every inline code span. A path counts when it starts with one of
the repository's own folders and names no placeholder (`<model>`, `…`, `*`, `$X`); paths the
commands create (git-ignored: spans, Feast's data, generated code) are not looked for.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FOLDERS = sorted(p.name for p in ROOT.iterdir()
                 if p.is_dir() and not p.name.startswith(".") and p.name not in {"build", "runs", "data"})
PLACEHOLDER = re.compile(r"[<>…*$%{}\[\]|]")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def code_of(text: str) -> list[str]:
    """The fenced blocks' lines and the inline code spans of a Markdown page."""
    code, prose, fence = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif fence:
            code.append(line)
        else:
            prose.append(line)
    # inline spans may wrap onto the next line of a paragraph
    code += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", "\n".join(prose))]
    return code


def commands(pattern: str) -> list[tuple[str, str]]:
    """(page, the words after the match) for every occurrence of pattern in the pages' code."""
    found = []
    for page in PAGES:
        for line in code_of(page.read_text()):
            for match in re.finditer(pattern, line):
                words = re.split(r"\s*(?:;|&&|\|\||\||#|\)|\()\s*", line[match.end():])[0].split()
                found.append((page.relative_to(ROOT).as_posix(), words))
    return found


def makefile_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_./ -]+?)\s*:(?![=:])", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


def make_targets() -> list[tuple[str, str]]:
    found = []
    for page, words in commands(r"(?:^|[\s`(])make\s+(?=\S)"):
        for word in words:
            if word.startswith("-") or ASSIGNMENT.match(word) or PLACEHOLDER.search(word):
                if word.startswith("-"):
                    break          # options: `make -n …` is not a target list
                continue
            if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                break              # prose after the command
            found.append((page, word))
    return sorted(set(found))


def python_modules() -> list[tuple[str, str]]:
    found = []
    for page, words in commands(r"(?:^|[\s`/])python3?\s+-m\s+(?=\S)"):
        if words and re.fullmatch(r"[A-Za-z_][\w.]*", words[0]):
            found.append((page, words[0]))
    return sorted(set(found))


def repository_paths() -> list[tuple[str, str]]:
    found = []
    start = "|".join(re.escape(folder) for folder in FOLDERS)
    path = re.compile(rf"(?<![\w./-])(?:{start})/[\w./-]*")
    for page in PAGES:
        for code in code_of(page.read_text()):
            for token in code.split():
                for match in path.finditer(token):
                    if PLACEHOLDER.search(token):
                        continue
                    found.append((page.relative_to(ROOT).as_posix(), match.group(0).rstrip(".,:;")))
    return sorted(set(found))


def ignored(path: str) -> bool:
    """Git-ignored: made by a command (spans, Feast's data, generated code), not shipped."""
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0


def has_main(module: str) -> bool:
    parts = module.split(".")
    local = ROOT.joinpath(*parts)
    if local.with_suffix(".py").is_file():
        source = local.with_suffix(".py").read_text()
    elif (local / "__main__.py").is_file():
        return True
    elif (local / "__init__.py").is_file():
        return False       # a package without __main__ cannot be run with -m
    elif parts[0] in FOLDERS:
        return False       # a repository folder, but no such module in it
    else:
        if len(parts) == 1:
            spec = importlib.util.find_spec(module)
            if spec is None:
                return False
            if spec.submodule_search_locations is not None:
                return importlib.util.find_spec(f"{module}.__main__") is not None
            return True    # an installed module run as a script: its own main guard
        return importlib.util.find_spec(module) is not None
    return "__name__ == \"__main__\"" in source or "__name__ == '__main__'" in source


def test_the_pages_show_commands():
    """The scan finds what it looks for: the README's two commands, the bench scripts, modules."""
    assert ("README.md", "run") in make_targets() and ("README.md", "test") in make_targets()
    assert any(module == "monitoring" for _, module in python_modules())
    assert any(path.startswith("benchmarks/") for _, path in repository_paths())
    assert any(path.startswith("tests/") for _, path in repository_paths())


@pytest.mark.parametrize("page,target", make_targets())
def test_make_target_exists(page, target):
    assert target in makefile_targets(), f"{page} shows `make {target}`, which the Makefile does not define"


@pytest.mark.parametrize("page,module", python_modules())
def test_python_module_runs(page, module):
    assert has_main(module), f"{page} shows `python -m {module}`, which is not a module with a main"


@pytest.mark.parametrize("page,path", repository_paths())
def test_repository_path_exists(page, path):
    assert (ROOT / path).exists() or ignored(path), f"{page} names `{path}`, which the repository does not have"
