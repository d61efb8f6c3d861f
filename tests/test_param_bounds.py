"""Every params section declares its bounds on its fields, and loading refuses a value past any.

In the spirit of scikit-learn's ``check_param_validation``: the sections are discovered (every
dataclass registered with ``@params_section``, and every dataclass anywhere in the project that
declares a :class:`Range`), each declared bound is found (nested dataclasses too), and for each a
value just outside it (and NaN for floats) must be refused by ``load_params`` with the project's
one message, naming the key. A section in params.yaml without a schema, or a bounded dataclass
that no section reaches (its bounds would never be checked), fails here.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import math
import re
import shutil
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml

from stages import common
from stages.common import PARAMS_SECTIONS, Range, StageError, check_constraints, load_params
from tests.conftest import REPO_ROOT

PACKAGES = ("stages", "serve", "monitor", "scale", "flows", "commands", "labelling")
# the aliases of stages.common that carry a Range (PositiveInt, Fraction, Share, ...)
BOUND_ALIASES = {name for name, value in vars(common).items()
                 if typing.get_origin(value) is Annotated
                 and any(isinstance(m, Range) for m in value.__metadata__)}


def declares_params(tree: ast.Module) -> bool:
    """A module with a dataclass that is registered as a section or annotates a field with a bound
    (found without importing: most project modules import torch, GX or prefect)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        decorators = {ast.unparse(d) for d in node.decorator_list}
        if not any(d.startswith("dataclass") for d in decorators):
            continue
        if any(d.startswith("params_section(") for d in decorators):
            return True
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign):
                names = {n.id for n in ast.walk(stmt.annotation) if isinstance(n, ast.Name)}
                if names & (BOUND_ALIASES | {"Range"}):
                    return True
    return False


def params_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if declares_params(ast.parse(path.read_text(encoding="utf-8"))):
                names.append(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts))
    return names


MODULES = [importlib.import_module(name) for name in params_modules()]


def ranges_and_type(hint: Any) -> tuple[list[Range], type | None]:
    """The Range bounds on an annotation (inside Optional too) and the number type they bound."""
    if typing.get_origin(hint) is Annotated:
        inner, kind = ranges_and_type(hint.__origin__)
        return [m for m in hint.__metadata__ if isinstance(m, Range)] + inner, kind
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [ranges_and_type(arg) for arg in typing.get_args(hint)]
        kinds = [k for _, k in found if k is not None]
        return [r for rs, _ in found for r in rs], kinds[0] if kinds else None
    return [], hint if hint in (int, float) else None


def nested_dataclasses(hint: Any) -> list[type]:
    if typing.get_origin(hint) is Annotated:
        return nested_dataclasses(hint.__origin__)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [d for arg in typing.get_args(hint) for d in nested_dataclasses(arg)]
    return [hint] if dataclasses.is_dataclass(hint) else []


def bounds(schema: type, prefix: tuple[str, ...] = (), nested: bool = True
           ) -> list[tuple[tuple[str, ...], type, Range]]:
    """(key path, int or float, bound) for every bound declared in ``schema``, nested ones too."""
    hints = typing.get_type_hints(schema, include_extras=True)
    found = []
    for f in dataclasses.fields(schema):
        ranges, kind = ranges_and_type(hints[f.name])
        found += [((*prefix, f.name), kind, r) for r in ranges]
        for inner in nested_dataclasses(hints[f.name]) if nested else []:
            found += bounds(inner, (*prefix, f.name))
    return found


def reachable(schema: type) -> set[type]:
    hints = typing.get_type_hints(schema, include_extras=True)
    out = {schema}
    for f in dataclasses.fields(schema):
        for inner in nested_dataclasses(hints[f.name]):
            out |= reachable(inner)
    return out


def outside(bound: Range, kind: type) -> list[Any]:
    """Values just past each side of ``bound`` (the bound itself where it is exclusive)."""
    values = []
    if bound.ge is not None:
        values.append(math.ceil(bound.ge) - 1 if kind is int else math.nextafter(bound.ge, -math.inf))
    if bound.gt is not None:
        values.append(kind(bound.gt))
    if bound.le is not None:
        values.append(math.floor(bound.le) + 1 if kind is int else math.nextafter(bound.le, math.inf))
    if bound.lt is not None:
        values.append(kind(bound.lt))
    return values + ([math.nan] if kind is float else [])


CASES = [(section, path, value)
         for section, schema in sorted(PARAMS_SECTIONS.items())
         for path, kind, bound in bounds(schema)
         for value in outside(bound, kind)]


@pytest.fixture(scope="module")
def params_text() -> str:
    return (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")


def test_every_section_of_params_yaml_has_a_schema_and_loads(params_text: str) -> None:
    sections = set(yaml.safe_load(params_text))
    assert set(PARAMS_SECTIONS) == sections, "register each section's dataclass with @params_section"
    for section, schema in PARAMS_SECTIONS.items():
        load_params(section, schema, REPO_ROOT / "params.yaml")


def test_every_bounded_dataclass_is_reached_from_a_section() -> None:
    """A bound on a dataclass that no section loads would never be checked."""
    covered = set().union(*(reachable(schema) for schema in PARAMS_SECTIONS.values()))
    bounded = {obj for module in MODULES for obj in vars(module).values()
               if isinstance(obj, type) and dataclasses.is_dataclass(obj)
               and obj.__module__ == module.__name__ and bounds(obj, nested=False)}
    assert bounded, "discovery found no bounded dataclass"
    assert not {f"{d.__module__}.{d.__qualname__}" for d in bounded - covered}


def test_defaults_are_within_their_bounds() -> None:
    for section, schema in PARAMS_SECTIONS.items():
        try:
            defaults = schema()
        except TypeError:  # a required key (ingest.source): params.yaml's values are checked above
            continue
        check_constraints(defaults, f"params.yaml:{section}")


def test_cases_cover_every_section_with_bounds() -> None:
    # the sections whose bounds are all on the fields; a new one shows up here by itself
    assert {"train", "serve", "score", "sweep", "gate", "monitor", "split"} <= {c[0] for c in CASES}


@pytest.mark.parametrize(("section", "path", "value"), CASES,
                         ids=[f"{s}.{'.'.join(p)}={v!r}" for s, p, v in CASES])
def test_a_value_past_a_bound_is_refused_naming_the_key(tmp_path: Path, params_text: str,
                                                        section: str, path: tuple[str, ...],
                                                        value: Any) -> None:
    params = yaml.safe_load(params_text)
    node = params[section]
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    file = tmp_path / "params.yaml"
    file.write_text(yaml.safe_dump(params, sort_keys=False))
    key = f"{section}.{'.'.join(path)}"
    with pytest.raises(StageError) as err:
        load_params(section, PARAMS_SECTIONS[section], file)
    assert err.value.what.startswith(f"{key} = ") and "is out of range: it must be" in err.value.what
    assert err.value.where == f"{file}:{key}"
    assert err.value.fix and err.value.fix.startswith("set a value") and "params.yaml" in err.value.fix


# ------------------------------------------------------------------ flags meet the same bounds


@pytest.fixture
def in_repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_score_flags_are_checked_like_the_file(in_repo_copy: Path) -> None:
    from scale.score import load_score_params, params_with, parse_args

    with pytest.raises(StageError, match=r"score\.workers = 0 is out of range: it must be >= 1"):
        params_with(parse_args(["--input", "x", "--workers", "0"]))
    with pytest.raises(StageError, match=r"score\.workers = 0 is out of range"):
        load_score_params({"workers": 0})  # what flows/score.py calls with its arguments
    assert load_score_params({"workers": 3, "address": None}).workers == 3


def test_the_score_flow_applies_the_cli_checks(in_repo_copy: Path) -> None:
    from flows.score import score_shards

    with pytest.raises(StageError, match=r"score\.workers = 0 is out of range"):
        score_shards.fn(str(in_repo_copy / "in"), "", None, {"workers": 0})


def test_serve_flags_are_checked_like_the_file(in_repo_copy: Path) -> None:
    from serve.params import load_serve_params

    with pytest.raises(StageError, match=r"serve\.port = 70000 is out of range: it must be >= 0 "
                                         r"and <= 65535"):
        load_serve_params(in_repo_copy / "params.yaml", {"port": 70000})
    assert load_serve_params(in_repo_copy / "params.yaml", {"port": 9000}).port == 9000


HAND_WRITTEN_BOUND = re.compile(r"must (be|stay) (positive|negative|non-negative|at least|at most|"
                                r"in \(|in \[|within|between|greater|smaller|below|above)"
                                r"|must not be (negative|zero)")


def test_no_hand_written_bound_checks() -> None:
    """A bound belongs on the field (one message, one check for file, flags and code); a StageError
    that says "must be positive" or "must be at least 1" is a second mechanism creeping back."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "StageError" and node.args \
                        and HAND_WRITTEN_BOUND.search(ast.unparse(node.args[0])):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not found, "declare these bounds on the params field (Range or an alias) instead"
