"""The pipeline as DVC sees it: stage graph and order, what changed, `-S` overrides.

Asked of DVC itself, never re-derived: the graph from ``dvc.repo.Repo(...).index.graph`` (put in
order with the standard library's ``graphlib``; ties keep dvc.yaml's order), what changed from
``dvc status --json``, and overrides applied by the code behind ``dvc exp run -S``
(``dvc.utils.hydra.apply_overrides``: same grammar, comments kept, unknown keys refused).
Used by the Prefect flow (flows/retrain.py) only, so it lives beside it; DVC is imported inside
the functions.
"""

from __future__ import annotations

import graphlib
import json
import re
from pathlib import Path
from typing import Any

from stages.common import StageError
from stages.vcs import dvc


def stage_graph(repo: Path) -> dict[str, list[str]]:
    """Each dvc.yaml stage and the stages it depends on, from DVC's own graph, in dvc.yaml order."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    def address(stage: PipelineStage) -> str:  # as `dvc repro` / `dvc status` in ``repo`` name it
        dvcfile = Path(stage.path).relative_to(repo.resolve())
        return stage.name if dvcfile == Path("dvc.yaml") else f"{dvcfile}:{stage.name}"

    try:
        with Repo(str(repo)) as dvc_repo:
            graph = dvc_repo.index.graph  # edges point from a stage to the stages it reads from
            stages = [s for s in dvc_repo.index.stages if isinstance(s, PipelineStage)]
            return {address(s): [address(d) for d in graph.successors(s)
                                 if isinstance(d, PipelineStage)] for s in stages}
    except DvcException as exc:
        raise StageError(f"DVC cannot read the pipeline: {exc}", where=str(repo / "dvc.yaml"),
                         fix="check dvc.yaml and params.yaml (`dvc dag`)") from None


def ancestors(graph: dict[str, list[str]], stage: str) -> set[str]:
    """``stage`` and every stage it depends on, directly or not."""
    seen, todo = {stage}, [stage]
    while todo:
        for parent in graph[todo.pop()]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def dag_order(repo: Path, until: str | None = None) -> list[str]:
    """Stages in dependency order (DVC's graph); ties keep dvc.yaml's order.

    With ``until``, only that stage and its ancestors (what `dvc repro <until>` would run).
    """
    graph = stage_graph(repo)
    if until is not None:
        if until not in graph:
            raise StageError(f"unknown stage {until!r}", where="dvc.yaml",
                             fix=f"use one of {list(graph)}")
        keep = ancestors(graph, until)
        graph = {s: deps for s, deps in graph.items() if s in keep}
    position = {name: i for i, name in enumerate(graph)}
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise StageError(f"dvc.yaml has a cycle: {exc.args[1]}", where="dvc.yaml") from None
    order: list[str] = []
    ready: list[str] = []
    while sorter.is_active():
        ready = sorted([*ready, *sorter.get_ready()], key=position.__getitem__)
        order.append(ready.pop(0))  # one at a time, so that dvc.yaml order breaks every tie
        sorter.done(order[-1])
    return order


def changed_stages(repo: Path, *targets: str, with_deps: bool = False) -> set[str]:
    """The stages `dvc status --json` reports as changed (no targets: the whole pipeline)."""
    args = ["status", "--json", *(["--with-deps"] if with_deps else []), *targets]
    return set(json.loads(dvc(*args, cwd=repo) or "{}"))


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["train.epochs=3", ...]`` (as `dvc exp run -S`) into ``{"train.epochs": "3"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StageError(f"override {item!r} is not section.key=value",
                             fix="e.g. -S train.epochs=3")
        out[key.strip()] = value
    return out


def _override_value(value: Any) -> str:
    """A value in `dvc exp run -S` grammar: strings as typed, the rest as JSON (true, null, [1])."""
    return value if isinstance(value, str) else json.dumps(value)


def apply_overrides(params_file: Path, overrides: dict[str, Any]) -> list[str]:
    """Write ``{"section.key": value}`` into params.yaml with DVC's own `dvc exp run -S` code.

    Comments and layout stay; only existing keys can be set (a typo stops the run here instead of
    adding an unused key); values are read as `-S` reads them ("3" is the number 3).
    """
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides as dvc_apply_overrides

    items = [f"{key}={_override_value(value)}" for key, value in overrides.items()]
    try:
        dvc_apply_overrides(params_file, items)
    except InvalidArgumentError as exc:
        cause = str(exc.__cause__ or exc)
        unknown = re.search(r"Could not override '([^']+)'", cause)
        raise StageError(f"unknown parameter {unknown[1]!r}" if unknown else
                         f"invalid override: {cause.splitlines()[0]}", where=str(params_file),
                         fix="override an existing key: section.key[.subkey]=value") from None
    return items


