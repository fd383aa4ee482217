"""The import graph shows the architecture: flywheel/ is the base every part builds on; components/
(the steps) use only flywheel/; pipelines/ (the DAG and its runners) use components/ and flywheel/;
serving/ and monitoring/ (what runs beside the model server) and devserver/ (the development
model server) use only flywheel/; trigger/ (the retraining trigger) starts pipelines; flywheel_cli/
(the `flywheel` command) sits on top of them all and nothing but the tests imports it; docker/
(the images' build) reads flywheel/'s names; featurestore/ (its own environment) and
controlplane/ (the cluster the product is tested against) import nothing of Flywheel; tools/ (the
default data's generator) uses components/ and flywheel/; tests/ and benchmarks/ may import
everything. Every top-level folder with Python has its rule. Inside flywheel/, the contract (the
modules directly in it) imports no domain package (drift/, temporal/, evaluation/, report/). No
module imports one that imports it back, also through imports inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

from flywheel.params import ROOT

PACKAGES = ("flywheel", "components", "pipelines", "serving", "monitoring", "devserver", "trigger", "featurestore",
            "flywheel_cli", "controlplane", "docker", "tools", "tests", "benchmarks")
EVERYTHING = set(PACKAGES)
ALLOWED = {
    "flywheel": {"flywheel"},
    "components": {"flywheel", "components"},
    "pipelines": {"flywheel", "components", "pipelines"},
    "serving": {"flywheel", "serving"},
    "monitoring": {"flywheel", "monitoring"},
    "devserver": {"flywheel", "devserver"},
    "trigger": {"flywheel", "pipelines", "trigger"},
    "featurestore": {"featurestore"},   # its own environment (Feast): reached through files and HTTP only
    "flywheel_cli": {"flywheel", "components", "pipelines", "serving", "monitoring", "devserver", "trigger",
                     "flywheel_cli"},
    "controlplane": {"controlplane"},   # the test cluster stands alone: it runs what the tests deploy
    "docker": {"flywheel", "docker"},   # the images' build reads the image names
    "tools": {"flywheel", "components", "tools"},
    "tests": EVERYTHING,
    "benchmarks": EVERYTHING,
}
# Single arrows across the layers, each with its reason.
EXCEPTIONS = {
    ("pipelines.labels_io", "monitoring.feedback"),    # raters' labels appended by the sidecar's durable feedback writer
    # Inside flywheel/: a bundle holds its version's drift references and loads them (lazily).
    ("flywheel.bundle", "flywheel.drift"),
    ("flywheel.bundle", "flywheel.drift.joint"),
}
DOMAIN = ("flywheel.drift", "flywheel.temporal", "flywheel.evaluation", "flywheel.report")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports, anywhere in it (a name imported from a module counts as the module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in candidates:
            if name.split(".")[0] in PACKAGES:
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in modules:
                    out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _domain(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in DOMAIN)


def test_the_contract_stands_under_the_domain_packages():
    contract = {name for name in graph() if name.startswith("flywheel.") and not _domain(name)}
    assert "flywheel.names" in contract and "flywheel.drift.joint" not in contract
    wrong = sorted(f"{a} -> {b}" for a in contract for b in graph()[a] if _domain(b) and (a, b) not in EXCEPTIONS)
    assert not wrong, wrong


def test_no_arrow_against_the_layers():
    wrong = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                   if b.split(".")[0] not in ALLOWED[a.split(".")[0]] and (a, b) not in EXCEPTIONS)
    assert not wrong, wrong


# What runs write beside the code (.gitignore): outputs, not packages.
OUTPUT_FOLDERS = {"build", "runs", "model_repository", "dvc-remote", "data"}


def test_every_folder_with_python_has_a_rule():
    folders = {d.name for d in ROOT.iterdir()
               if d.is_dir() and not d.name.startswith(".") and not d.name.endswith(".egg-info")
               and d.name not in OUTPUT_FOLDERS and next(d.rglob("*.py"), None) is not None}
    assert folders <= set(ALLOWED), sorted(folders - set(ALLOWED))


def test_no_import_cycle():
    edges = graph()
    # A package imports its submodules' names through __init__; that is not a cycle of behaviour.
    edges = {a: {b for b in targets if not (b.startswith(a + ".") and a in PACKAGES + ("flywheel.drift",))}
             for a, targets in edges.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [node, target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles
