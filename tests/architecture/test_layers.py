"""The import graph shows the architecture: flywheel/ is the base every part builds on; components/
(the steps) use only flywheel/; pipelines/ (the DAG and its runners) use components/ and flywheel/
(and the live report the sidecar's metric names);
serving/ and monitoring/ (what runs beside the model server) and devserver/ (the development
model server) use only flywheel/; trigger/ (the retraining trigger) starts pipelines. No module imports
one that imports it back, also through imports inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

from flywheel.params import ROOT

PACKAGES = ("flywheel", "components", "pipelines", "serving", "monitoring", "devserver", "trigger", "featurestore")
ALLOWED = {
    "flywheel": {"flywheel"},
    "components": {"flywheel", "components"},
    "pipelines": {"flywheel", "components", "pipelines"},
    "serving": {"flywheel", "serving"},
    "monitoring": {"flywheel", "monitoring"},
    "devserver": {"flywheel", "devserver"},
    "trigger": {"flywheel", "pipelines", "trigger"},
    "featurestore": {"featurestore"},   # its own environment (Feast): reached through files and HTTP only
}
# Single arrows across the layers, each with its reason.
EXCEPTIONS = {
    ("pipelines.live_report", "monitoring.metrics"),   # the live report reads the sidecar's metrics by their names
    ("pipelines.span_from_logs", "monitoring.redaction"),  # logged rows redacted again by the sidecar's own redactor
    ("pipelines.labels_io", "monitoring.feedback"),    # raters' labels appended by the sidecar's durable feedback writer
}


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


def test_no_arrow_against_the_layers():
    wrong = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                   if b.split(".")[0] not in ALLOWED[a.split(".")[0]] and (a, b) not in EXCEPTIONS)
    assert not wrong, wrong


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
