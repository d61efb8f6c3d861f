"""The table readers of stages/tables.py: a path, a file's bytes and a stream of chunks give the
same frame and the same refusal messages, for plain and compressed files."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from stages.common import StageError
from stages.tables import iter_table_chunks, read_table, read_table_bytes

ROWS = pd.DataFrame({"id": ["1", "2", "3"], "text": ["a b", "c, d", "é"], "label": ["x", "y", "x"]})


def write(path: Path) -> Path:
    if path.suffix == ".csv":
        ROWS.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        ROWS.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        ROWS.to_parquet(path, index=False)
    return path


def zipped(data: bytes, *names: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name in names or ("t.csv",):
            archive.writestr(name, data)
    return buf.getvalue()


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


COMPRESS = {".gz": lambda d: gzip.compress(d, mtime=0), ".bz2": bz2.compress, ".zip": zipped,
            ".zst": zstd}
HAS_ZSTD = importlib.util.find_spec("zstandard") is not None
CSV = ROWS.to_csv(index=False).encode()


def message(fn, *args) -> str:
    with pytest.raises(StageError) as info:
        fn(*args)
    return str(info.value)


@pytest.mark.parametrize("name", ["t.csv", "t.jsonl", "t.parquet"])
def test_bytes_path_and_chunks_read_the_same_frame(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name)
    whole = read_table(str(path), "texts")
    pd.testing.assert_frame_equal(read_table_bytes(path.read_bytes(), str(path), "texts"), whole)
    chunks = pd.concat(list(iter_table_chunks(str(path), "texts", 2, ("text", "label"))),
                       ignore_index=True)
    pd.testing.assert_frame_equal(chunks, whole)
    assert whole["text"].tolist() == ROWS["text"].tolist()


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("t.csv", b"", "texts file is empty"),
    ("t.csv", b"id,text\n", "texts file has no rows"),
    ("t.xlsx", b"x", "texts: unsupported file type"),
    ("t.csv", b"PAR1....", "is Parquet (it starts with the bytes 'PAR1') but is named as csv"),
    ("t.csv", b"id,text\n1,a,\n2,b,\n", "one more field than the header"),
    ("t.csv", b"id,text\n1,caf\xe9\n", "not valid UTF-8 (byte 0xe9"),
    ("t.parquet", b"id,text\n1,a\n", "is named .parquet but is CSV or JSON text"),
])
def test_bytes_and_path_refuse_with_the_same_message(tmp_path: Path, name: str, content: bytes,
                                                     needle: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    from_path = message(read_table, str(path), "texts")
    assert needle in from_path
    assert message(read_table_bytes, content, str(path), "texts") == from_path


@pytest.mark.parametrize("plain", ["t.csv", "t.jsonl"])
@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zip",
                                    pytest.param(".zst", marks=pytest.mark.skipif(
                                        not HAS_ZSTD, reason="zstandard is not installed"))])
def test_a_compressed_table_reads_as_the_plain_file(tmp_path: Path, plain: str, suffix: str
                                                    ) -> None:
    expected = read_table(str(write(tmp_path / plain)), "texts")
    path = tmp_path / f"{plain}{suffix}"
    path.write_bytes(COMPRESS[suffix]((tmp_path / plain).read_bytes()))
    pd.testing.assert_frame_equal(read_table(str(path), "texts"), expected)
    pd.testing.assert_frame_equal(read_table_bytes(path.read_bytes(), str(path), "texts"), expected)
    chunks = list(iter_table_chunks(str(path), "texts", 2, ("text", "label")))
    assert [len(c) for c in chunks] == [2, 1]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), expected)


def test_a_compressed_table_reads_over_http(tmp_path: Path) -> None:
    """A URL is decompressed the same way (its query string does not hide the suffix)."""
    import functools
    import http.server
    import threading

    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(CSV, mtime=0))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/t.csv.gz?sig=abc"
        pd.testing.assert_frame_equal(read_table(url, "texts"), ROWS)
        pd.testing.assert_frame_equal(pd.concat(list(iter_table_chunks(url, "texts", 2)),
                                                ignore_index=True), ROWS)
    finally:
        server.shutdown()


REFUSALS = [
    ("texts.csv", gzip.compress(CSV, mtime=0), "texts file texts.csv is gzip-compressed, not CSV text"
     "\n  where: {path}\n  fix:   rename it to texts.csv.gz (read directly) or decompress it "
     "(gunzip)"),
    ("t.csv", bz2.compress(CSV), "t.csv is bz2-compressed, not CSV text"),
    ("t.jsonl", zipped(CSV), "t.jsonl is zip-compressed, not JSON text"),
    ("t.csv", b"\x28\xb5\x2f\xfd" + CSV, "t.csv is zstd-compressed, not CSV text"),
    ("t.parquet", gzip.compress(CSV, mtime=0), "t.parquet is gzip-compressed, not Parquet"),
    ("t.parquet.gz", gzip.compress(CSV, mtime=0), "unsupported file type: a gzip-compressed Parquet"),
    ("t.csv.gz", CSV, "t.csv.gz is named as gzip-compressed but is not compressed"),
    ("t.csv.gz", bz2.compress(CSV), "is bz2-compressed (it starts with 'BZh"),
    ("t.csv.gz", gzip.compress(CSV, mtime=0)[:-10], "could not be decompressed as gzip (truncated"),
    ("t.csv.bz2", bz2.compress(CSV)[:-10], "could not be decompressed as bz2 (truncated"),
    ("t.csv.zip", b"PK\x03\x04" + CSV, "could not be decompressed as zip"),
    ("t.csv.zip", zipped(CSV, "a.csv", "b.csv"), "holds 2 files ['a.csv', 'b.csv'], not one"),
    ("t.csv", zipped(b"x", "[Content_Types].xml", "xl/workbook.xml"), "is an Excel workbook"),
    ("t.csv.gz", b"", "texts file is empty"),
    ("t.csv.gz", gzip.compress(b"", mtime=0), "texts file is empty"),
    ("t.csv", b"# exported from helpdesk\nid,text\n1,a\n",
     "line 1 is a comment/preamble above the header ('# exported from helpdesk')"),
    ("t.csv", b"\n# exported\n#  by: x\n\nid,text\n1,a\n", "lines 2-4 are a comment/preamble"),
    ("t.csv", b"id,text\n1,a,,\n2,b,,\n", "every row has 2 more fields than the header "
     "['id', 'text'], all empty (trailing commas"),
    ("t.csv", b"id,text\n1,hello, world\n2,b\n", "line 2 has one more field than the header "
     "['id', 'text'], not empty (an unquoted comma"),
]


# ids from the case's position and file name: compressed bytes (a zip's timestamps) must not
# make the test ids differ between pytest-xdist workers
@pytest.mark.parametrize(("name", "content", "needle"), REFUSALS,
                         ids=[f"{i:02d}-{case[0]}" for i, case in enumerate(REFUSALS)])
def test_compression_and_csv_shape_refusals(tmp_path: Path, name: str, content: bytes,
                                            needle: str) -> None:
    """The three readers refuse alike; a comment line above the header is named, not mistaken
    for trailing commas."""
    path = tmp_path / name
    path.write_bytes(content)
    needle = needle.format(path=path)
    from_path = message(read_table, str(path), "texts")
    assert needle in from_path
    assert message(read_table_bytes, content, str(path), "texts") == from_path
    assert message(lambda: list(iter_table_chunks(str(path), "texts", 2))) == from_path


@pytest.mark.skipif(HAS_ZSTD, reason="zstandard is installed: .zst is read")
def test_zst_without_zstandard_says_to_decompress(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + CSV)
    text = message(read_table, str(path), "texts")
    assert "needs the package 'zstandard'" in text and "unzstd t.csv.zst" in text


def test_a_hash_named_column_is_a_header_not_a_comment(tmp_path: Path) -> None:
    """'#,id,text' above rows of the same width is a header (a row-number column named '#')."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"#,id,text\n1,t1,hi\n2,t2,#hashtag\n")
    df = read_table(str(path), "texts")
    assert list(df.columns) == ["#", "id", "text"] and df["text"].tolist() == ["hi", "#hashtag"]
