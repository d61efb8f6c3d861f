"""The label audit as a reviewer reads it: reports/label_audit.md and a self-contained HTML page.

Both list the headline (suspect share against the limit, the most confused class pairs, the classes
with most suspects) and the top suspects, lowest label quality first. Texts appear only when
``report.show_texts`` is true, escaped; otherwise a row shows its id and text hash. No script, no
external resource: the page opens offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stages.markdown_safety import code, escape_markdown
from stages.report_format import md_table, num
from stages.validation_report import esc

if TYPE_CHECKING:
    import pandas as pd

TEXT_WIDTH = 120  # characters of a text quoted in the report


def verdict(metrics: dict[str, Any]) -> str:
    """One line: how many labels look wrong, against the limit, and what the mode does."""
    share, limit = metrics["suspect_share"], metrics["max_suspect_share"]
    over = share > limit
    action = {"report": "a warning" if over else "nothing to do",
              "block": "the pipeline stops" if over else "the pipeline goes on",
              "exclude": f"train leaves the {metrics['excluded']} suspects out"}[metrics["mode"]]
    return (f"{metrics['suspects']} of {metrics['rows']} train and val labels look wrong "
            f"({100 * share:.1f}%, limit {100 * limit:g}%, mode {metrics['mode']}): {action}")


def _top_classes(metrics: dict[str, Any], n: int = 10) -> list[tuple[str, dict[str, Any]]]:
    ranked = sorted(metrics["per_class"].items(), key=lambda kv: (-kv[1]["suspects"], kv[0]))
    return [(label, row) for label, row in ranked[:n] if row["suspects"]]


def _suspect_rows(suspects: pd.DataFrame, texts: dict[str, str], top: int,
                  show_texts: bool) -> list[dict[str, Any]]:
    rows = []
    for rec in suspects.head(top).itertuples(index=False):
        rows.append({"id": rec.id, "split": rec.split, "label": rec.label, "suggested": rec.suggested,
                     "quality": rec.label_quality,
                     "text": texts.get(rec.id, "") if show_texts else rec.text_hash})
    return rows


def markdown(metrics: dict[str, Any], suspects: pd.DataFrame, texts: dict[str, str], top: int,
             show_texts: bool) -> str:
    """reports/label_audit.md: every data value escaped (it may be posted in a pull request)."""
    lines = ["# Label audit", "", verdict(metrics) + ".", "",
             f"Out-of-fold accuracy of the audit model ({metrics['model']['features']}, "
             f"{metrics['model']['folds']} folds): {num(metrics['model']['out_of_fold_accuracy'])}. "
             "A suspect's label disagrees with what the rest of the data predicts for its text; "
             "a person decides.", ""]
    if metrics["confused_pairs"]:
        lines += ["## Most confused pairs (given label → suggested label)", ""]
        lines += md_table(["given", "suggested", "suspects"],
                          [[code(p["given"]), code(p["suggested"]), p["rows"]]
                           for p in metrics["confused_pairs"]], align="llr")
        lines.append("")
    classes = _top_classes(metrics)
    if classes:
        lines += ["## Classes with the most suspects", ""]
        lines += md_table(["class", "rows", "suspects", "share"],
                          [[code(label), row["rows"], row["suspects"], num(row["suspect_share"])]
                           for label, row in classes], align="lrrr")
        lines.append("")
    rows = _suspect_rows(suspects, texts, top, show_texts)
    lines += [f"## Top {len(rows)} suspects (lowest label quality first)", "",
              "Texts are quoted (escaped): `report.show_texts` is true." if show_texts else
              "Texts are shown by hash (`report.show_texts: false`).", ""]
    if rows:
        lines += md_table(["id", "split", "given", "suggested", "label quality",
                           "text" if show_texts else "text hash"],
                          [[code(r["id"]), r["split"], code(r["label"]), code(r["suggested"]),
                            num(r["quality"]),
                            escape_markdown(r["text"], width=TEXT_WIDTH) if show_texts else code(r["text"])]
                           for r in rows], align="llllrl")
    else:
        lines.append("No suspects.")
    return "\n".join(lines) + "\n"


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
.verdict{padding:.6em 1em;border-radius:4px;font-weight:600}
.verdict.over{background:#fff4e0;border:2px solid #ef6c00}
.verdict.ok{background:#e3f4e5;border:2px solid #2e7d32}
table{border-collapse:collapse;width:100%;margin:1em 0} td,th{border:1px solid #ccc;
padding:.35em .5em;vertical-align:top;text-align:left} th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums} code,.text{font-family:monospace;
white-space:pre-wrap;word-break:break-word}
"""


def _html_table(header: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{esc(v)}</td>" if numeric else f"<td>{v}</td>"
                                    for v, numeric in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html(metrics: dict[str, Any], suspects: pd.DataFrame, texts: dict[str, str], top: int,
         show_texts: bool) -> str:
    """reports/label_audit.html: one page, inline CSS, no script, every data value escaped."""
    over = metrics["suspect_share"] > metrics["max_suspect_share"]
    pairs = _html_table(["given", "suggested", "suspects"],
                        [[(f"<code>{esc(p['given'])}</code>", False),
                          (f"<code>{esc(p['suggested'])}</code>", False), (p["rows"], True)]
                         for p in metrics["confused_pairs"]])
    classes = _html_table(["class", "rows", "suspects", "share"],
                          [[(f"<code>{esc(label)}</code>", False), (row["rows"], True),
                            (row["suspects"], True), (num(row["suspect_share"]), True)]
                           for label, row in _top_classes(metrics)])
    rows = _suspect_rows(suspects, texts, top, show_texts)
    table = _html_table(["id", "split", "given", "suggested", "label quality",
                         "text" if show_texts else "text hash"],
                        [[(f"<code>{esc(r['id'])}</code>", False), (esc(r["split"]), False),
                          (f"<code>{esc(r['label'])}</code>", False),
                          (f"<code>{esc(r['suggested'])}</code>", False), (num(r["quality"]), True),
                          (f"<span class=\"text\">{esc(r['text'])}</span>", False)] for r in rows])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Label audit: {metrics['suspects']} suspects</title><style>{CSS}</style></head><body>
<h1>Label audit</h1>
<p class="verdict {'over' if over else 'ok'}">{esc(verdict(metrics))}</p>
<p>Out-of-fold accuracy of the audit model ({esc(metrics['model']['features'])},
{esc(metrics['model']['folds'])} folds): {esc(num(metrics['model']['out_of_fold_accuracy']))}.
A suspect's label disagrees with what the rest of the data predicts for its text; a person decides.
All suspects: <code>data/label_audit/suspects.parquet</code>.</p>
<h2>Most confused pairs (given label → suggested label)</h2>
{pairs if metrics['confused_pairs'] else '<p>None.</p>'}
<h2>Classes with the most suspects</h2>{classes}
<h2>Top {len(rows)} suspects (lowest label quality first)</h2>
<p>{'Texts are quoted: report.show_texts is true.' if show_texts else
    'Texts are shown by hash: report.show_texts is false.'}</p>
{table if rows else '<p>No suspects.</p>'}
</body></html>
"""
