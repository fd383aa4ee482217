"""dvc.yaml's stages depend on every project module their command imports, and on every
params.yaml section the code they run reads, so `dvc repro` reruns a stage whenever its result
could change."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import yaml

from flywheel.params import ROOT

PROJECT = ("flywheel", "components", "pipelines", "serving", "monitoring", "tools")


def _module_file(name: str) -> Path | None:
    """The file of a module, or None for a name that is not one (`from flywheel.params import ROOT`)."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def imported_closure(module: str) -> set[Path]:
    """Files of the project modules `module` imports, directly or not (imports inside functions count)."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        path = _module_file(pending.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            pending += [n for n in names if n.split(".")[0] in PROJECT]
    return {p.resolve().relative_to(ROOT) for p in seen}


def _covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


def test_every_stage_depends_on_the_modules_its_command_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = {"generate": "tools.datagen", "pipeline": "pipelines.cli"}
    for stage, module in commands.items():
        assert stages[stage]["cmd"] == f"python -m {module}" or stages[stage]["cmd"].startswith(f"python -m {module} ")
        missing = sorted(str(p) for p in imported_closure(module) if not _covered(p, stages[stage]["deps"]))
        assert not missing, f"dvc.yaml stage '{stage}' imports {missing} but does not depend on them"


def test_the_pipeline_stage_tracks_every_section_the_pipeline_takes():
    from pipelines.training_pipeline import SECTIONS

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["pipeline"]
    assert set(SECTIONS) <= set(stage["params"])
