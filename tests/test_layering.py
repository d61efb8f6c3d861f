"""The packages stay in their layers (DESIGN.md, "Layout"), checked on every import, lazy ones too:

- stages/ is the bottom layer: it imports nothing from commands/, flows/, serve/, monitor/, scale/;
- serve/, monitor/ and scale/ never import one another, nor commands/ or flows/;
- no module imports a DVC stage's entry module (one dvc.yaml runs as ``python -m stages.<name>``):
  what two modules share goes into a helper module in stages/, so that a change to one stage's
  code never re-runs another stage.

Each failure lists every offending import, to fix them all in one go.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO_ROOT, imported_modules, project_modules, stage_entry_modules

# package -> the packages it must not import
FORBIDDEN = {
    "stages": {"commands", "flows", "serve", "monitor", "scale", "labelling"},
    "serve": {"monitor", "scale", "commands", "flows", "labelling"},
    "monitor": {"serve", "scale", "commands", "flows", "labelling"},
    "scale": {"serve", "monitor", "commands", "flows", "labelling"},
    # labelling reads the log through monitor's reader; nothing below it imports labelling
    "labelling": {"serve", "scale", "commands", "flows"},
}


def package(module: str) -> str:
    return module.split(".")[0]


def imports_by_module() -> dict[str, set[str]]:
    return {name: imported_modules(path) for name, path in project_modules().items()}


def test_no_package_imports_a_layer_it_must_not() -> None:
    wrong = [f"{module} imports {imported}"
             for module, imported_set in imports_by_module().items()
             for imported in sorted(imported_set)
             if package(imported) in FORBIDDEN.get(package(module), set())]
    assert not wrong, "imports across layers (see DESIGN.md, Layout):\n" + "\n".join(wrong)


def test_no_module_imports_a_stage_entry_module() -> None:
    entries = stage_entry_modules()
    wrong = [f"{module} imports {imported}: move what they share into a helper module in stages/"
             for module, imported_set in imports_by_module().items()
             for imported in sorted(imported_set & entries) if imported != module]
    assert not wrong, "stage entry modules imported by other modules:\n" + "\n".join(wrong)


def test_the_scanner_sees_every_package_and_stage() -> None:
    modules = project_modules()
    assert {package(m) for m in modules} == {"stages", "commands", "flows", "serve", "monitor", "scale",
                                                "labelling"}
    assert {"stages.ingest", "stages.train", "stages.gate", "stages.benchmark"} <= stage_entry_modules()
    assert stage_entry_modules() <= set(modules)


def test_a_lazy_forbidden_import_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from monitor import detectors\n    import stages.ingest\n")
    assert imported_modules(module) == {"monitor.detectors", "stages.ingest"}


def test_the_stages_module_map_names_every_module_in_its_group() -> None:
    """stages/__init__.py says in one line what each module is: entry modules, then helpers."""
    doc = ast.get_docstring(ast.parse((REPO_ROOT / "stages/__init__.py").read_text()))
    entries_part, _, helpers_part = doc.partition("Shared helpers")

    def listed(text: str) -> list[str]:
        return [f"stages.{name}" for name in re.findall(r"^    (\w+) {2,}\S", text, re.M)]

    entries = stage_entry_modules()
    modules = {m for m in project_modules() if m.startswith("stages.") and m != "stages.__init__"}
    assert sorted(listed(entries_part)) == sorted(entries), "the entry group is dvc.yaml's stages"
    helpers = listed(helpers_part)
    assert sorted(helpers) == sorted(modules - entries), (
        f"add to the map in stages/__init__.py: {sorted(modules - entries - set(helpers))}; "
        f"remove: {sorted(set(helpers) - (modules - entries))}")
