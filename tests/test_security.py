"""Security: values from the data never become markup in reports; credentials never leave a URL.

(The PR-comment escaping is tested with the report command, in tests/test_report.py.)
"""

from __future__ import annotations

import re
import shutil
import socket
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from stages.common import StageError, redact_url
from stages.tables import check_no_credentials, read_table
from tests.conftest import REPO_ROOT, make_rows, run_stage, set_params, write_csv

SCRIPT = "<script>alert('pwned')</script>"
IMG = '<img src=x onerror="alert(1)">'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.attrs += [k for k, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def hostile_validation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw data whose failing values are markup: a blank-ish text, a too-short one, a new class."""
    root = tmp_path_factory.mktemp("hostile")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    texts, labels = make_rows(20)
    texts[0]["text"] = IMG
    texts[1]["text"] = "<"  # too short: a failing value shown as an example
    labels[2]["label"] = SCRIPT  # an unknown class (declared label set below)
    set_params(root, {"validate": {"labels": sorted({r["label"] for r in make_rows(20)[1]}),
                                   "text_length": {"min": 2, "max": 20}}})
    for rows, rel in ((texts, "data/raw/texts.parquet"), (labels, "data/labels/labels.parquet")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).astype("string").to_parquet(root / rel, index=False)
    proc = run_stage("validate", root)
    assert proc.returncode == 1, proc.stderr  # labels.label_set and texts.text_length fail
    assert "labels.label_set" in proc.stderr
    return root / "reports/validation/raw"


def test_validation_report_escapes_every_value(hostile_validation: Path) -> None:
    page = (hostile_validation / "report.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    # only the page's own structure: no script, no image, no event handler from the data
    assert parser.tags <= {"html", "head", "meta", "title", "style", "body", "h1", "p", "ul", "li",
                           "span", "table", "thead", "tbody", "tr", "th", "td", "code"}
    assert not [a for a in parser.attrs if a.startswith("on") or a == "src"]
    assert "<script" not in page and "<img" not in page
    # ...and the values are there, as text a reviewer can read
    text = "".join(parser.text)
    assert SCRIPT in text and IMG.replace('"', "'") in text.replace('"', "'")
    assert re.search(r'class="badge fail"[^>]*>FAIL<', page)


def test_validation_summary_markdown_escapes_values(hostile_validation: Path) -> None:
    summary = (hostile_validation / "summary.md").read_text(encoding="utf-8")
    assert "<script" not in summary and "<img" not in summary
    assert "&lt;script&gt;" in summary


def test_no_gx_data_docs_are_shipped(hostile_validation: Path) -> None:
    """GX's Data Docs (unescaped values, CDN assets) are no longer written at all."""
    assert not (hostile_validation / "data_docs").exists()
    assert sorted(p.name for p in hostile_validation.iterdir()) == \
        ["report.html", "results.json", "summary.md"]


@pytest.mark.parametrize("url, shown", [
    ("https://alice:s3cr3t@example.com/data/texts.csv", "https://***@example.com/data/texts.csv"),
    ("https://token123@example.com/t.csv", "https://***@example.com/t.csv"),
    ("https://example.com/t.csv?X-Amz-Signature=abc&part=1&access_token=zz",
     "https://example.com/t.csv?X-Amz-Signature=***&part=1&access_token=***"),
    ("s3://bucket/texts.parquet", "s3://bucket/texts.parquet"),
    ("data/sample/texts.csv", "data/sample/texts.csv"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", ["https://alice:s3cr3t@example.com/t.csv",
                                 "s3://AKIAEXAMPLE:s3cr3t@bucket/t.csv",
                                 "webdav://bob:s3cr3t@127.0.0.1:1/t.csv"])
def test_credentials_in_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(StageError) as err:
        read_table(url, "texts")
    assert "credentials inside a URL are refused" in str(err.value)
    assert "s3cr3t" not in str(err.value)
    check_no_credentials("https://example.com/t.csv")  # no userinfo: fine


def test_urls_in_ingest_logs_and_errors_are_redacted(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    texts, labels = make_rows(2)
    write_csv(tmp_path / "l.csv", labels)
    url = f"http://127.0.0.1:{port}/texts.csv?token=s3cr3t-token"
    set_params(tmp_path, {"ingest": {"source": {"texts": url, "labels": "l.csv"}}})
    proc = run_stage("ingest", tmp_path)
    assert proc.returncode == 1
    assert "could not connect to the server" in proc.stderr
    assert f"http://127.0.0.1:{port}/texts.csv?token=***" in proc.stderr
    assert "s3cr3t-token" not in proc.stderr + proc.stdout
