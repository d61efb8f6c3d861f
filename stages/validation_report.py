"""The validation report a reviewer opens: one self-contained HTML page, safe and offline.

Replaces GX Data Docs: no script, inline CSS, every data value escaped; FAIL, WARN and pass differ
in colour and text. :class:`Report` (one :class:`Outcome` per expectation) lives here;
stages/validate.py builds it and writes its files.
More: docs/validation.md.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    """What one expectation found, flattened from the GX result for summaries and tests."""

    check: str
    expectation: str
    frame: str
    blocking: bool
    success: bool
    message: str
    unexpected_count: int | None = None
    examples: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass
class Report:
    outcomes: list[Outcome]
    notes: list[str]
    results: dict[str, Any]  # GX validation results, JSON-ready

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.blocking]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and not o.blocking]

    @property
    def failed_checks(self) -> list[str]:
        return sorted({o.check for o in self.failed})

    @property
    def warned_checks(self) -> list[str]:
        return sorted({o.check for o in self.warnings})


STATUS = {"FAIL": ("fail", "blocking failure: the stage stops"),
          "WARN": ("warn", "warning only (validate.warn_only): the stage continues"),
          "pass": ("pass", "passed")}

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} .verdict{padding:.6em 1em;border-radius:4px;font-weight:600}
.verdict.fail{background:#fde2e1;border:2px solid #c62828}
.verdict.pass{background:#e3f4e5;border:2px solid #2e7d32}
table{border-collapse:collapse;width:100%;margin-top:1em} td,th{border:1px solid #ccc;
padding:.35em .5em;vertical-align:top;text-align:left} th{background:#f3f3f3}
.badge{display:inline-block;min-width:3.2em;text-align:center;border-radius:3px;
padding:0 .4em;font-weight:700;font-family:monospace}
.badge.fail{background:#c62828;color:#fff} .badge.warn{background:#f9a825;color:#222}
.badge.pass{background:#e3f4e5;color:#2e7d32;font-weight:400}
tr.fail td{background:#fff5f5} tr.warn td{background:#fffbea}
code,.value{font-family:monospace;white-space:pre-wrap;word-break:break-word}
ul.examples{margin:.2em 0;padding-left:1.2em}
"""


def esc(value: Any) -> str:
    """Escape anything for HTML text and attribute context."""
    return html.escape(str(value), quote=True)


def status(o: Outcome) -> str:
    return "pass" if o.success else ("FAIL" if o.blocking else "WARN")


def _row(o: Outcome) -> str:
    label = status(o)
    css, meaning = STATUS[label]
    examples = ""
    if o.examples and not o.success:
        items = "".join(f"<li><code>{esc(rid)}</code>: <span class=\"value\">{esc(_short(v))}"
                        "</span></li>" for rid, v in o.examples)
        examples = f"<ul class=\"examples\">{items}</ul>"
    return (f"<tr class=\"{css}\"><td><span class=\"badge {css}\" title=\"{esc(meaning)}\">"
            f"{label}</span></td><td><code>{esc(o.check)}</code></td>"
            f"<td>{'yes' if o.blocking else 'no (warn only)'}</td>"
            f"<td>{esc(o.message)}{examples}</td></tr>")


def _short(value: Any, width: int = 200) -> str:
    text = repr(value) if not isinstance(value, float) else f"{value:.4g}"
    return text if len(text) <= width else text[: width - 3] + "..."


def report_html(report: Report, title: str) -> str:
    """The whole page as a string (deterministic: the same report gives the same bytes)."""
    failed, warned = report.failed_checks, report.warned_checks
    verdict = "FAILED" if failed else "passed"
    css = "fail" if failed else "pass"
    order = {"FAIL": 0, "WARN": 1, "pass": 2}
    rows = "".join(_row(o) for o in sorted(report.outcomes, key=lambda o: order[status(o)]))
    notes = "".join(f"<li>{esc(n)}</li>" for n in report.notes)
    legend = "".join(f"<li><span class=\"badge {c}\">{k}</span> {esc(m)}</li>"
                     for k, (c, m) in STATUS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{esc(title)}: {verdict}</title><style>{CSS}</style></head><body>
<h1>{esc(title)}</h1>
<p class="verdict {css}">{verdict}: {len(failed)} blocking check(s) failed
{"(" + esc(", ".join(failed)) + ")" if failed else ""}, {len(warned)} warning(s)
{"(" + esc(", ".join(warned)) + ")" if warned else ""}, {len(report.outcomes)} expectations</p>
<ul>{notes}</ul>
<ul>{legend}</ul>
<table><thead><tr><th>result</th><th>check</th><th>blocking</th><th>details</th></tr></thead>
<tbody>{rows}</tbody></table>
<p>Full Great Expectations results: <code>results.json</code> in this directory.</p>
</body></html>
"""
