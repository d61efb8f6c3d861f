"""ingest: good files in every format, and the bad-input catalogue (clear error, exit 1, no outputs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_rows, run_stage, set_params, write_csv
from tests.helpers import assert_failed_with

OUTPUTS = ("data/raw/texts.parquet", "data/labels/labels.parquet")


def use_source(root: Path, texts: str, labels: str, **extra: object) -> None:
    set_params(root, {"ingest": {"source": {"texts": texts, "labels": labels}, **extra}})


def assert_failed(proc, *needles: str, root: Path) -> None:
    assert_failed_with(proc, "stages.ingest", *needles)
    for out in OUTPUTS:
        assert not (root / out).exists(), f"{out} was written by a failed run"


@pytest.fixture
def good(workdir: Path) -> Path:
    texts, labels = make_rows(5)
    write_csv(workdir / "in/texts.csv", texts)
    write_csv(workdir / "in/labels.csv", labels)
    use_source(workdir, "in/texts.csv", "in/labels.csv")
    return workdir


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_reads_every_format(workdir: Path, fmt: str) -> None:
    texts, labels = make_rows(4)
    (workdir / "in").mkdir()
    for name, rows in (("texts", texts), ("labels", labels)):
        df, path = pd.DataFrame(rows), workdir / f"in/{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        elif fmt == "jsonl":
            df.to_json(path, orient="records", lines=True)
        else:
            df.to_parquet(path, index=False)
    use_source(workdir, f"in/texts.{fmt}", f"in/labels.{fmt}")
    proc = run_stage("ingest", workdir)
    assert proc.returncode == 0, proc.stderr
    raw = pd.read_parquet(workdir / OUTPUTS[0])
    lab = pd.read_parquet(workdir / OUTPUTS[1])
    assert list(raw.columns) == ["id", "text", "source"]
    assert list(lab.columns) == ["id", "label"]
    assert len(raw) == len(lab) == len(texts)
    assert raw["id"].is_monotonic_increasing
    assert raw.set_index("id").loc["t00001", "text"] == texts[0]["text"]


def test_missing_texts_file(good: Path) -> None:
    use_source(good, "in/nope.csv", "in/labels.csv")
    assert_failed(run_stage("ingest", good), "texts file not found", "in/nope.csv",
                  "ingest.source", root=good)


def test_missing_labels_file(good: Path) -> None:
    use_source(good, "in/texts.csv", "in/missing_labels.csv")
    assert_failed(run_stage("ingest", good), "labels file not found", "in/missing_labels.csv",
                  root=good)


@pytest.mark.parametrize(("which", "column"), [("texts", "id"), ("texts", "text"),
                                               ("labels", "id"), ("labels", "label")])
def test_missing_required_column(good: Path, which: str, column: str) -> None:
    path = good / f"in/{which}.csv"
    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)
    assert_failed(run_stage("ingest", good), f"{which}: required column(s) ['{column}'] missing",
                  f"in/{which}.csv", root=good)


def test_empty_file(good: Path) -> None:
    (good / "in/texts.csv").write_text("")
    assert_failed(run_stage("ingest", good), "texts file is empty", "in/texts.csv", root=good)


def test_header_only_file(good: Path) -> None:
    (good / "in/labels.csv").write_text("id,label\n")
    assert_failed(run_stage("ingest", good), "labels file has no rows", root=good)


def test_duplicate_ids(good: Path) -> None:
    path = good / "in/texts.csv"
    df = pd.read_csv(path)
    df.loc[3, "id"] = df.loc[2, "id"]
    df.to_csv(path, index=False)
    assert_failed(run_stage("ingest", good), "appear more than once", "t00003", "in/texts.csv",
                  root=good)


def test_label_without_text(good: Path) -> None:
    path = good / "in/labels.csv"
    df = pd.read_csv(path)
    pd.concat([df, pd.DataFrame([{"id": "ghost-1", "label": "refund_request"}])]).to_csv(path, index=False)
    assert_failed(run_stage("ingest", good), "1 label row(s) have no text", "ghost-1",
                  "in/labels.csv", root=good)


def test_unlabelled_texts_dropped_with_warning(good: Path) -> None:
    path = good / "in/labels.csv"
    pd.read_csv(path).iloc[2:].to_csv(path, index=False)
    proc = run_stage("ingest", good)
    assert proc.returncode == 0, proc.stderr
    assert "2 text(s) have no label" in proc.stderr


def test_unlabelled_texts_fail_when_asked(good: Path) -> None:
    path = good / "in/labels.csv"
    pd.read_csv(path).iloc[2:].to_csv(path, index=False)
    set_params(good, {"ingest": {"source": {"texts": "in/texts.csv", "labels": "in/labels.csv"},
                                 "unlabelled_texts": "fail"}})
    assert_failed(run_stage("ingest", good), "2 text(s) have no label", "['t00001', 't00002']",
                  "ingest.unlabelled_texts: drop", root=good)


def test_non_utf8_bytes(good: Path) -> None:
    path = good / "in/texts.csv"
    data = path.read_bytes().replace(b"subscription", "café subscription".encode("latin-1"), 1)
    path.write_bytes(data)
    line = data[: data.index(b"caf\xe9")].count(b"\n") + 1
    assert_failed(run_stage("ingest", good), "not valid UTF-8", "byte 0xe9", f"line {line}",
                  "iconv", root=good)


def test_unknown_param_is_rejected(good: Path) -> None:
    set_params(good, {"ingest": {"batch": 3}})
    proc = run_stage("ingest", good)
    assert proc.returncode == 1
    assert "unknown parameter(s) ['batch']" in proc.stderr


def test_failed_run_keeps_previous_outputs(good: Path) -> None:
    assert run_stage("ingest", good).returncode == 0
    before = (good / OUTPUTS[0]).read_bytes()
    (good / "in/texts.csv").write_text("")
    assert run_stage("ingest", good).returncode == 1
    assert (good / OUTPUTS[0]).read_bytes() == before
    assert not list((good / "data/raw").glob(".*tmp")), "temporary files left behind"


@pytest.mark.parametrize(("texts_name", "labels_name"), [("texts.csv.gz", "labels.jsonl.bz2"),
                                                         ("texts.jsonl.zip", "labels.csv.gz")])
def test_reads_compressed_sources_like_the_plain_files(workdir: Path, texts_name: str,
                                                       labels_name: str) -> None:
    """texts.csv.gz and friends are read directly: the outputs equal those of the plain files."""
    import bz2
    import gzip
    import io
    import zipfile

    def zipped(data: bytes) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("table", data)
        return buf.getvalue()

    compress = {"gz": gzip.compress, "bz2": bz2.compress, "zip": zipped}
    texts, labels = make_rows(4)
    (workdir / "in").mkdir()
    for name, rows in ((texts_name, texts), (labels_name, labels)):
        fmt, how = name.split(".")[1:]
        df = pd.DataFrame(rows)
        plain = (df.to_csv(index=False) if fmt == "csv"
                 else df.to_json(orient="records", lines=True)).encode()
        (workdir / "in" / name).write_bytes(compress[how](plain))
        write_csv(workdir / "plain" / f"{name.split('.')[0]}.csv", rows)
    use_source(workdir, "plain/texts.csv", "plain/labels.csv")
    assert run_stage("ingest", workdir).returncode == 0
    expected = [pd.read_parquet(workdir / out) for out in OUTPUTS]
    use_source(workdir, f"in/{texts_name}", f"in/{labels_name}")
    proc = run_stage("ingest", workdir)
    assert proc.returncode == 0, proc.stderr
    for out, want in zip(OUTPUTS, expected, strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(workdir / out), want)
