"""How numbers and tables look in every markdown report (gate.md, the PR report, monitoring
windows, sweeps, flow artifacts).

One formatter per idea, so the same macro-F1 reads the same in every report: :func:`num` for a
value, :func:`signed` for a difference, :func:`ci` for a confidence interval, :func:`md_table` for a
table (cells escaped with :func:`cell`). A missing value is always :data:`MISSING`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stages.common import params_section

MISSING = "—"


@params_section("report")
@dataclass(frozen=True)
class ReportParams:
    """``report:`` in params.yaml: how reports built from the data treat its texts (the PR report,
    the label audit)."""

    # quote texts in reports. Off by default: the PR report goes into a pull request, which may be
    # public, and texts are customer data. Off, rows are shown by id and text hash (the fingerprint
    # checkpoints store in training_data.json).
    show_texts: bool = False


def _plain(value: float) -> bool:
    """Four decimals read well between 0.001 and 100,000; outside that, significant digits."""
    return value == 0 or 1e-3 <= abs(value) < 1e5


def num(value: Any, spec: str | None = None) -> str:
    """A metric, count or flag: floats to 4 decimals, ints as they are, None as :data:`MISSING`.

    ``spec`` (a format spec such as ``".4g"``) replaces the 4-decimal rule for floats, for
    statistics whose scale varies over decades (drift scores, p-values).
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if spec is not None:
            return format(value, spec)
        return f"{value:.4f}" if _plain(value) else f"{value:.4g}"
    return str(value)


def signed(value: Any) -> str:
    """A difference, always with its sign (+0.0123, -4)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:+.4f}" if _plain(value) else f"{value:+.4g}"
    return f"{value:+d}"


def ci(interval: Sequence[float] | None) -> str:
    """A confidence interval of a difference: ``[-0.0100, +0.0200]``."""
    return f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else MISSING


def cell(text: Any) -> str:
    """A value safe inside a markdown table cell: no pipe ends the cell, no line break (CR or LF,
    with the spaces around it) ends the row."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).replace("|", "\\|")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
             align: str | None = None) -> list[str]:
    """A markdown table as lines; ``align`` is one letter a column: ``l``, ``r`` or ``c``.

    The default aligns the first column left and the rest (numbers) right. Cells are escaped;
    format numbers with :func:`num` / :func:`signed` before passing them.
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(header)} columns")
    marks = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    return (["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join(marks) + " |"]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])
