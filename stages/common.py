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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

PARAMS_FILE = Path(os.environ.get("RETRAINER_PARAMS", "params.yaml"))

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """A bound on a numeric parameter, declared on the dataclass field it constrains::

        max_length: Annotated[int, Range(ge=1)] = 128    # or the aliases below

    :func:`load_params` checks every field (defaults too) before a stage does any work.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        lo = f"> {self.gt}" if self.gt is not None else f">= {self.ge}" if self.ge is not None else ""
        hi = f"< {self.lt}" if self.lt is not None else f"<= {self.le}" if self.le is not None else ""
        return " and ".join(x for x in (lo, hi) if x)

    def check(self, value: Any, where: str) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        if not ok or value != value:  # NaN fails every bound
            raise StageError(f"{where.rsplit(':', 1)[-1]} = {value!r} is out of range: it must be "
                             f"{self.describe()}", where=where,
                             fix=f"set a value {self.describe()} in params.yaml")


# the common bounds, by what they mean
PositiveInt = Annotated[int, Range(ge=1)]          # counts and sizes: at least 1
NonNegativeInt = Annotated[int, Range(ge=0)]       # counts where 0 means "none"/"off"
PositiveFloat = Annotated[float, Range(gt=0)]      # rates, tolerances
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(gt=0, lt=1)]     # a share strictly between 0 and 1
Share = Annotated[float, Range(ge=0, le=1)]        # a share, 0 and 1 included
Port = Annotated[int, Range(ge=0, le=65535)]       # a TCP port (0: any free one)

# params.yaml section -> the dataclass it is read into, filled by @params_section as modules load
PARAMS_SECTIONS: dict[str, type] = {}


def params_section(name: str) -> Callable[[type[T]], type[T]]:
    """Mark a dataclass as the schema of params.yaml section ``name``::

        @params_section("train")
        @dataclass
        class TrainParams: ...

    The registry lets one generic test find every section and every bound declared in it
    (tests/test_param_bounds.py); loading still goes through :func:`load_params`.
    """
    def register(schema: type[T]) -> type[T]:
        PARAMS_SECTIONS[name] = schema
        return schema

    return register


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


SECRET_QUERY_KEYS = ("token", "key", "secret", "password", "passwd", "sig", "signature",
                     "credential", "auth")


def redact_url(url: str) -> str:
    """``url`` safe to log or show: user, password and secret-looking query values replaced.

    The one redaction helper: every URL that goes into a log line, an error, an event or a report
    passes through it. Paths without ``://`` are returned unchanged.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if "://" not in str(url):
        return str(url)
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if any(s in k.lower() for s in SECRET_QUERY_KEYS) else v)
                           for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
    text = path.read_text(encoding="utf-8")
    try:
        params = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, path) from None
    if not isinstance(params, dict):
        raise StageError("params file must be a mapping of sections", where=str(path),
                         fix="start each section at column 0, e.g. 'train:' then indented keys")
    return params


def _yaml_error(exc: yaml.YAMLError, text: str, path: Path) -> StageError:
    """The YAML error as line/column and the likely fix (tabs are the usual culprit)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    tab_lines = [i + 1 for i, line in enumerate(text.splitlines())
                 if "\t" in line[: len(line) - len(line.lstrip())]]
    if tab_lines:
        return StageError(f"params file is not valid YAML: tab indentation on line(s) "
                          f"{tab_lines[:5]} ({problem})", where=where,
                          fix="indent with spaces only; YAML does not allow tabs")
    return StageError(f"params file is not valid YAML: {problem}", where=where,
                      fix="fix the syntax at that line (check indentation, colons and quotes), "
                      "or restore it with `git checkout -- params.yaml`")


def load_params(section: str, schema: type[T], path: Path = PARAMS_FILE,
                overrides: Mapping[str, Any] | None = None) -> T:
    """Read one section of params.yaml into a dataclass, rejecting unknown or mistyped keys.

    ``overrides`` (command-line flags, a flow's arguments) replace the file's values before
    anything is checked, so a flag meets the same types and bounds as the file.
    """
    params = read_params_file(path)
    if section not in params:
        raise StageError(f"section '{section}' missing", where=str(path),
                         fix=f"add a '{section}:' section (see the README's parameter table)")
    values = params[section] or {}
    if overrides and isinstance(values, dict):
        values = {**values, **overrides}
    return from_mapping(schema, values, f"{path}:{section}")


def from_mapping(schema: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass ``schema`` from ``values``; nested dataclasses are built recursively."""
    if not isinstance(values, dict):
        raise StageError(f"expected a mapping, got {type(values).__name__}", where=where,
                         fix="write the keys indented under it, one 'key: value' per line")
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise StageError(f"unknown parameter(s) {unknown}", where=where,
                         fix=f"allowed keys: {sorted(fields)}")
    hints = typing.get_type_hints(schema, include_extras=True)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        obj = schema(**kwargs)
    except TypeError as exc:  # a required key without a default
        raise StageError(str(exc), where=where,
                         fix="add the missing key (see the README's parameter table)") from None
    check_constraints(obj, where)
    return obj


def check_constraints(obj: Any, where: str) -> None:
    """Every :class:`Range` declared on ``obj``'s fields, then its own ``check_params`` (for
    rules between fields, such as min <= max), defaults included."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for bound in _ranges(hints[f.name]):
            bound.check(value, f"{where}.{f.name}")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_constraints(value, f"{where}.{f.name}")  # a nested default, too
    extra = getattr(obj, "check_params", None)
    if callable(extra):
        extra(where)


def _ranges(hint: Any) -> list[Range]:
    """The Range bounds of an annotation, looking inside Optional/Union."""
    if typing.get_origin(hint) is Annotated:
        return [m for m in hint.__metadata__ if isinstance(m, Range)] + _ranges(hint.__origin__)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [r for arg in typing.get_args(hint) for r in _ranges(arg)]
    return []


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` as the type ``hint`` declares (a dataclass, Optional/Union, Literal, list, dict
    or a scalar), or a StageError naming the key."""
    if typing.get_origin(hint) is Annotated:
        hint = hint.__origin__
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(hint, value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise StageError(f"value {value!r} not allowed", where=where,
                             fix=f"use one of {list(typing.get_args(hint))}")
        return value
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        if not isinstance(value, list):
            raise StageError(f"expected a list, got {value!r}", where=where,
                             fix=f"set {_key(where)} to a list, e.g. [a, b]")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_t = typing.get_args(hint) or (Any, Any)
        if not isinstance(value, dict):
            raise StageError(f"expected a mapping, got {value!r}", where=where,
                             fix=f"set {_key(where)} to a mapping, e.g. {{key: value}}")
        return {k: _coerce(val_t, v, f"{where}.{k}") for k, v in value.items()}
    return _coerce_scalar(hint, value, where)


def _coerce_union(hint: Any, value: Any, where: str) -> Any:
    """The first member of an Optional/Union that ``value`` fits."""
    if value is None and type(None) in typing.get_args(hint):
        return None
    for arg in typing.get_args(hint):
        if arg is type(None):
            continue
        try:
            return _coerce(arg, value, where)
        except StageError:
            continue
    raise StageError(f"value {value!r} does not fit {hint}", where=where,
                     fix=f"set {_key(where)} to a value of type {hint}")


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
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
        article = "an" if hint.__name__[0] in "aeiou" else "a"
        raise StageError(f"expected {hint.__name__}, got {value!r}", where=where,
                         fix=f"set {_key(where)} to {article} {hint.__name__}")
    return value


def _key(where: str) -> str:
    """``train.epochs`` from ``params.yaml:train.epochs``."""
    return where.rsplit(":", 1)[-1]


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
