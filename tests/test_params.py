"""The one params loader: typed sections, unknown keys refused, YAML 1.1 quirks handled."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from stages.common import StageError, load_params


@dataclass
class Inner:
    texts: str


@dataclass
class Example:
    source: Inner
    rate: float = 0.1
    steps: int = 3
    mode: Literal["a", "b"] = "a"
    edges: list[int] = field(default_factory=list)
    maybe: str | None = None


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(body)
    return path


def test_typed_section_with_nested_dataclass(tmp_path: Path) -> None:
    path = write(tmp_path, "ex:\n  source: {texts: t.csv}\n  rate: 1\n  edges: [1, 2]\n  mode: b\n")
    params = load_params("ex", Example, path)
    assert params == Example(source=Inner("t.csv"), rate=1.0, edges=[1, 2], mode="b")
    assert isinstance(params.rate, float)


def test_exponent_without_dot_is_a_float(tmp_path: Path) -> None:
    # what `dvc exp run -S ex.rate=2e-5` writes; PyYAML alone would hand over the string '2e-05'
    path = write(tmp_path, "ex:\n  source: {texts: t.csv}\n  rate: 2e-05\n")
    assert load_params("ex", Example, path).rate == pytest.approx(2e-5)


@pytest.mark.parametrize(("body", "message"), [
    ("ex:\n  source: {texts: t.csv}\n  ratee: 1\n", "unknown parameter(s) ['ratee']"),
    ("ex:\n  source: {texts: t.csv}\n  steps: 2.5\n", "expected int, got 2.5"),
    ("ex:\n  source: {texts: t.csv}\n  steps: true\n", "expected int, got True"),
    ("ex:\n  source: {texts: t.csv}\n  rate: fast\n", "expected float, got 'fast'"),
    ("ex:\n  source: {texts: t.csv}\n  mode: c\n", "value 'c' not allowed"),
    ("ex:\n  rate: 1\n", "missing 1 required positional argument: 'source'"),
    ("other: {}\n", "section 'ex' missing"),
])
def test_bad_params_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(StageError, match=None) as err:
        load_params("ex", Example, write(tmp_path, body))
    assert message in str(err.value)
