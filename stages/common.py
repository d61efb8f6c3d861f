"""The few things every stage shares: params loading, logging, errors and the CLI wrapper.

One way to do each: stages read their own ``params.yaml`` section with :func:`load_params`,
log with :func:`get_logger`, raise :class:`StageError` for anything a user can fix, and run
their ``main`` through :func:`run_cli` so the message and exit code are always the same shape.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

PARAMS_FILE = Path(os.environ.get("RETRAINER_PARAMS", "params.yaml"))

T = TypeVar("T")


class StageError(Exception):
    """An error the user can act on: says what went wrong, where, and how to fix it."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        self.what, self.where, self.fix = what, where, fix
        parts = [what]
        if where:
            parts.append(f"  where: {where}")
        if fix:
            parts.append(f"  fix:   {fix}")
        super().__init__("\n".join(parts))


def module_name(name: str) -> str:
    """``stages.x`` for ``__main__`` when run as ``python -m stages.x``."""
    if name == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        return spec.name if spec else name
    return name


def get_logger(name: str) -> logging.Logger:
    """The project's one logger setup: one line per step, to stderr, with the stage name."""
    name = module_name(name)
    root = logging.getLogger("retrainer")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("RETRAINER_LOG_LEVEL", "INFO"))
        root.propagate = False
    return root.getChild(name.rsplit(".", 1)[-1])


def progress(iterable: Any, **kwargs: Any) -> Any:
    """A tqdm progress bar; in logs (no terminal) it prints a line every 30 s instead of redrawing."""
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 1 if sys.stderr.isatty() else 30)
    return tqdm(iterable, **kwargs)


def read_params_file(path: Path = PARAMS_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise StageError(f"params file not found: {path}", fix="run from the repository root")
    with path.open(encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise StageError("params file must be a mapping of sections", where=str(path))
    return params


def load_params(section: str, schema: type[T], path: Path = PARAMS_FILE) -> T:
    """Read one section of params.yaml into a dataclass, rejecting unknown or mistyped keys."""
    params = read_params_file(path)
    if section not in params:
        raise StageError(f"section '{section}' missing", where=str(path),
                         fix=f"add a '{section}:' section (see the README's parameter table)")
    return from_mapping(schema, params[section] or {}, f"{path}:{section}")


def from_mapping(schema: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass ``schema`` from ``values``; nested dataclasses are built recursively."""
    if not isinstance(values, dict):
        raise StageError(f"expected a mapping, got {type(values).__name__}", where=where)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise StageError(f"unknown parameter(s) {unknown}", where=where,
                         fix=f"allowed keys: {sorted(fields)}")
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return schema(**kwargs)
    except TypeError as exc:  # a required key without a default
        raise StageError(str(exc), where=where) from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except StageError:
                continue
        raise StageError(f"value {value!r} does not fit {hint}", where=where)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise StageError(f"value {value!r} not allowed", where=where,
                             fix=f"use one of {list(typing.get_args(hint))}")
        return value
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        if not isinstance(value, list):
            raise StageError(f"expected a list, got {value!r}", where=where)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_t = typing.get_args(hint) or (Any, Any)
        if not isinstance(value, dict):
            raise StageError(f"expected a mapping, got {value!r}", where=where)
        return {k: _coerce(val_t, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads 2e-5 as a string; `dvc exp run -S lr=2e-5` writes exactly that
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and hint is not bool or not isinstance(value, hint):
        raise StageError(f"expected {hint.__name__}, got {value!r}", where=where)
    return value


def run_cli(main: Callable[[], Any]) -> None:
    """Run a stage's ``main``; turn a :class:`StageError` into a message and exit code 1."""
    stage = module_name(main.__module__)
    log = get_logger(stage)
    start = time.perf_counter()
    try:
        main()
    except StageError as exc:
        print(f"\nERROR [{stage}]: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"\nINTERRUPTED [{stage}]: outputs were not written", file=sys.stderr)
        sys.exit(130)
    log.info("done in %.1fs", time.perf_counter() - start)
