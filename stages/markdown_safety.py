"""Data values made inert in markdown that may be posted publicly (the PR report's comment).

A value that comes from the data (an id, a label, an annotator, a text, a class name inside a gate
check) must render as plain text: no @-mention or #reference (they notify people), no link, image
or bare URL, no HTML, no table broken by a pipe or a newline. This module is that boundary:
:func:`escape_markdown` for prose, :func:`code` for identifiers, :func:`defuse_markdown` for
markdown the pipeline wrote itself (reports/gate.md) and :func:`text_hash` for a text not quoted.
Pipes are left to :func:`stages.report_format.cell`, which escapes them in every table cell.
"""

from __future__ import annotations

import re
from typing import Any

from stages.report_format import MISSING

# Characters that start markdown syntax (CommonMark + GFM: emphasis, code, links, images, headings,
# lists, strikethrough, autolinks, HTML tags and entities); each is backslash-escaped. The pipe is
# left to md_table(), which escapes it in every cell (escaping it twice would end the cell).
_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!~<>&:;\"'=$%^])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069]")
ZWSP = "\u200b"  # breaks @-mentions, #references and bare URLs without changing what one reads


def _defang(text: str) -> str:
    """Break what GitHub links from plain text: @user / @org/team mentions, #123 and org/repo#123
    references (they notify people and other repositories) and bare URLs (autolinks)."""
    text = re.sub(r"@(?=\w)", "@" + ZWSP, text)
    text = re.sub(r"#(?=\w)", "#" + ZWSP, text)
    text = re.sub(r"(?i)\b(https?|ftp|file|mailto|www)(?=[:.])", lambda m: m.group(1) + ZWSP, text)
    return text


def escape_markdown(text: Any, width: int | None = None) -> str:
    """``text`` as inert plain text for a markdown table cell (md_table() escapes its pipes): one
    line, no markup, no HTML, no mention, no link or image; shortened to ``width`` characters."""
    text = "" if text is None or text != text else _CONTROL.sub("", str(text))
    text = " ".join(text.split())               # newlines, tabs and runs of spaces: one space
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    # defang first: GFM links bare URLs in the parsed text, after backslash escapes are gone
    return _MD_PUNCT.sub(r"\\\1", _defang(text))  # `\<` is a literal <: no HTML tag opens


def code(text: Any) -> str:
    """``text`` as an inline code span for a table cell (ids, labels; md_table() escapes pipes):
    code spans render no markup, HTML or mention; a fence longer than any backtick run inside
    keeps it closed."""
    text = " ".join(_CONTROL.sub("", str(text)).split())
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def defuse_markdown(text: str) -> str:
    """Markdown written by the pipeline (reports/gate.md) embedded as markdown, with what a data
    value inside it (a class name in a check name, a slice value) could smuggle in made inert:
    raw HTML, images, links, mentions, references, bare URLs."""
    # `<` opens every HTML tag and `&` every entity (`&#64;` is an @); `>` alone is a blockquote
    text = _CONTROL.sub("", text).replace("&", "&amp;").replace("<", "&lt;")
    text = text.replace("![", "!\\[").replace("](", "]\\(")
    return _defang(text)


def text_hash(text: Any) -> str:
    """The text's training-data fingerprint: matches checkpoints' training_data.json."""
    from stages.data import text_fingerprint

    return MISSING if text is None or text != text else text_fingerprint(str(text))
