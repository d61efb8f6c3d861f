"""dvc.yaml agrees with the code: each stage's code deps are exactly the project modules it runs,
and every path a stage declares or touches is named in the artifact contract (stages/artifacts.py).

If a stage imports a module (even lazily, inside a function) that dvc.yaml does not list, DVC would
not re-run the stage when that module changes; if dvc.yaml lists a module the stage no longer
imports, DVC re-runs it for nothing. Both fail here, with the list to copy into dvc.yaml.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from stages import artifacts
from tests.helpers import REPO_ROOT, imported_modules, module_file, stage_module

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


def closure(module: str) -> set[str]:
    """``module`` and every project module it imports, directly or not, as repo-relative paths."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(imported_modules(module_file(name)))
    return {module_file(m).relative_to(REPO_ROOT).as_posix() for m in seen
            if not m.endswith("__init__")}


def paths(entries: list) -> list[str]:
    """dvc.yaml deps/outs entries (a path, or {path: options}) as paths."""
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def declared(stage: dict, *kinds: str) -> list[str]:
    return [p for kind in kinds for p in paths(stage.get(kind))]


def contract_paths() -> dict[str, str]:
    """Every path the artifact contract names: {"data/raw/texts.parquet": "RAW_TEXTS", ...}."""
    named = {str(v): k for k, v in vars(artifacts).items()
             if k.isupper() and isinstance(v, Path)}
    named |= {artifacts.split_path(n).as_posix(): f"split_path({n!r})" for n in artifacts.SPLIT_NAMES}
    return named


@pytest.mark.parametrize("name", list(STAGES))
def test_code_deps_are_the_modules_the_stage_runs(name: str) -> None:
    stage = STAGES[name]
    needed = closure(stage_module(stage))
    listed = {p for p in declared(stage, "deps") if p.endswith(".py")}
    assert listed == needed, (
        f"dvc.yaml stage {name!r}: missing {sorted(needed - listed)}, "
        f"not imported {sorted(listed - needed)}; its deps should list {sorted(needed)}")


def test_closure_follows_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from stages import io\n    import stages.tables\n")
    assert imported_modules(module) == {"stages.io", "stages.tables"}
    # stages.artifacts imports stages.io only inside its functions: it is still a dependency
    assert "stages/io.py" in closure("stages.artifacts")


def test_every_declared_path_is_named_in_the_contract() -> None:
    named = contract_paths()
    unnamed = {f"{stage}: {p}" for stage, spec in STAGES.items()
               for p in declared(spec, "deps", "outs", "metrics", "plots")
               if not p.endswith(".py") and not p.startswith("${") and p not in named}
    assert not unnamed, f"add these to stages/artifacts.py (and use them): {sorted(unnamed)}"


def referenced_contract_names(path: Path) -> set[str]:
    """The artifacts constants a module uses: ``artifacts.X`` and ``from stages.artifacts import X``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "artifacts":
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "stages.artifacts":
            names |= {alias.name for alias in node.names}
    return {n for n in names if n.isupper()}


def test_a_stage_touches_only_outputs_it_declares_or_depends_on() -> None:
    """An output of the pipeline that a stage module names must be that stage's out or dep: a
    stage reading another stage's output without the dep would run before it, or on stale data."""
    owner = {p: s for s, spec in STAGES.items() for p in declared(spec, "outs", "metrics", "plots")}
    by_module: dict[str, list[str]] = {}
    for name, spec in STAGES.items():  # validate and validate_splits run the same module
        by_module.setdefault(stage_module(spec), []).append(name)
    wrong = []
    for module, stages in by_module.items():
        allowed = {p for s in stages for p in declared(STAGES[s], "deps", "outs", "metrics", "plots")}
        for const in sorted(referenced_contract_names(module_file(module))):
            path = getattr(artifacts, const)
            if isinstance(path, Path) and path.as_posix() in owner and path.as_posix() not in allowed:
                wrong.append(f"{module} uses artifacts.{const} ({path}, an output of "
                             f"{owner[path.as_posix()]}) but {stages} do not declare it")
    assert not wrong, wrong
