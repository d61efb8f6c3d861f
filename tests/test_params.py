"""The one params loader: typed sections, unknown keys refused, YAML 1.1 quirks handled."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from stages.common import PositiveInt, Share, StageError, load_params


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


@dataclass
class Bounded:
    steps: PositiveInt = 3
    share: Share = 0.5


def test_overrides_meet_the_same_types_and_bounds_as_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "ex:\n  steps: 2\n")
    assert load_params("ex", Bounded, path, {"steps": 5}) == Bounded(steps=5)
    assert load_params("ex", Bounded, path, {"share": 1}).share == 1.0  # coerced like the file
    with pytest.raises(StageError) as err:
        load_params("ex", Bounded, path, {"steps": 0})
    assert str(err.value).splitlines()[0] == "ex.steps = 0 is out of range: it must be >= 1"
    assert err.value.where == f"{path}:ex.steps" and err.value.fix == "set a value >= 1 in params.yaml"
    with pytest.raises(StageError, match="expected int, got 'many'"):
        load_params("ex", Bounded, path, {"steps": "many"})


def test_a_class_share_floor_no_data_can_meet_is_a_params_error(tmp_path: Path) -> None:
    """Relative class shares average exactly 1, so a floor above 1 would fail every class of every
    dataset: it is refused as a params error before any data is read, not reported as bad data."""
    from stages.expectations import ValidateParams

    path = tmp_path / "params.yaml"
    path.write_text("validate:\n  class_share:\n    min_vs_uniform: 5\n")
    with pytest.raises(StageError) as info:
        load_params("validate", ValidateParams, path)
    message = str(info.value)
    assert "min_vs_uniform = 5.0 is out of range: it must be >= 0 and <= 1" in message
    assert "params.yaml:validate.class_share.min_vs_uniform" in message
    assert "fix:" in message
