"""The one normaliser: what counts as the same message (split key, leakage, conflicts, fingerprint)."""

from __future__ import annotations

import pytest

from stages.data import normalise_text, text_fingerprint


@pytest.mark.parametrize("a, b", [
    ("refund my order", "re\u200bfund my order"),           # zero-width space
    ("refund my order", "\u200erefund my order\u200f"),     # direction marks
    ("refund my order", "\ufeffrefund my\u00a0order"),      # BOM, no-break space
    ("non-stop", "non\u2011stop"),                          # non-breaking hyphen
    ("non-stop", "non\u2014stop"),                          # em dash
    ("where is it", "Where is it?!"),                        # trailing punctuation, case
    ("help me", "help me!!!"),
    ("wait, what", "wait,,, what"),                          # a punctuation run
    ("abc 123", "ＡＢＣ １２３"),                              # NFKC: full-width forms
    ("strasse", "Straße"),                                   # case-folding, not lower()
    ("tab here", "tab\there\n"),
    ("ab", "a\x00b"),                                        # control characters
])
def test_the_same_message(a: str, b: str) -> None:
    assert normalise_text(a) == normalise_text(b)
    assert text_fingerprint(a) == text_fingerprint(b)


@pytest.mark.parametrize("a, b", [
    ("refund", "refunds"), ("1.5 kg", "15 kg"), ("don't", "dont"), ("e.g. this", "eg this"),
    ("a-b", "ab"), ("cafe", "café"),
])
def test_different_messages_stay_different(a: str, b: str) -> None:
    assert normalise_text(a) != normalise_text(b)


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u200d\u2060", "\u200e\u200f\ufeff", "?!", "..."])
def test_no_content_is_blank(text: str) -> None:
    assert normalise_text(text) == ""
