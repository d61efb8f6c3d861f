"""The one reader of user tables (CSV, JSONL/JSON, Parquet; a path or an fsspec URL).

ingest, split's golden test set and predict all read through :func:`read_table`, so every malformed
file gets the same kind of message (what, where, how to fix). It sniffs formats, reads compressed
tables, refuses credentials in URLs and redacts URLs in messages.
More: docs/hardening.md.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import importlib.util
import io
import json
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from stages.common import StageError, redact_url

if TYPE_CHECKING:
    import pandas as pd

TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
# columns whose values must be strings (a list or a number there is a broken export, not data)
STRING_COLUMNS = ("text", "label")
# fsspec protocols whose filesystem lives in a separate package
PROTOCOL_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
                     "abfs": "adlfs", "abfss": "adlfs", "adl": "adlfs", "sftp": "paramiko",
                     "ssh": "paramiko", "hf": "huggingface_hub", "webdav": "webdav4"}
PARQUET_MAGIC = b"PAR1"
# a text table may be compressed: the outer suffix names the compression (texts.csv.gz)
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zip": "zip"}
COMPRESSION_SUFFIX = {name: suffix for suffix, name in COMPRESSIONS.items()}
# the bytes every file of that compression starts with: the name is checked against them
COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd",
                     b"PK\x03\x04": "zip"}
DECOMPRESS_COMMAND = {"gzip": "gunzip", "bz2": "bunzip2", "zstd": "unzstd", "zip": "unzip"}
FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSON", "parquet": "Parquet"}


def _file_name(source: str) -> str:
    """The path part of a path or URL (a URL's query string, e.g. a signature, dropped)."""
    from urllib.parse import urlsplit

    return urlsplit(source).path if "://" in source else source


def table_compression(source: str) -> str | None:
    """The compression named by the file's outer suffix (``gzip`` for ``texts.csv.gz``), or None."""
    name = _file_name(source).lower()
    return next((c for suffix, c in COMPRESSIONS.items() if name.endswith(suffix)), None)


def table_format(source: str, what: str) -> str:
    """The format named by the file's suffix, under a compression suffix if there is one."""
    name = _file_name(source).lower()
    compression = table_compression(source)
    if compression is not None:
        name = name.removesuffix(COMPRESSION_SUFFIX[compression])
    suffix = next((s for s in TABLE_FORMATS if name.endswith(s)), None)
    if suffix is None:
        raise StageError(f"{what}: unsupported file type", where=redact_url(source),
                         fix=f"use one of {sorted(TABLE_FORMATS)} (CSV and JSON may be "
                         f"compressed: {', '.join(f'.csv{s}' for s in COMPRESSIONS)})")
    fmt = TABLE_FORMATS[suffix]
    if compression is not None and fmt == "parquet":
        raise StageError(f"{what}: unsupported file type: a {compression}-compressed Parquet file",
                         where=redact_url(source),
                         fix=f"decompress it ({DECOMPRESS_COMMAND[compression]}); Parquet "
                         "compresses its own columns, so a .parquet is read as it is")
    return fmt


def check_no_credentials(source: str, where: str | None = None) -> None:
    """Refuse ``user:password@`` inside a URL: the URL is logged, sent in events, kept in dvc.lock."""
    from urllib.parse import urlsplit

    if "://" not in source:
        return
    parts = urlsplit(source)
    if parts.username or parts.password:
        raise StageError(
            "credentials inside a URL are refused (they would be written to logs, the "
            "data-arrived event and dvc.lock)", where=where or redact_url(source),
            fix="remove 'user:password@' from the URL and give the credentials through the "
            "environment or the filesystem's config (e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "for s3://, ~/.netrc or fsspec's config for https://)")


def read_bytes(source: str, what: str) -> bytes:
    """The whole file (local or fsspec URL), with errors that say which kind of failure it was."""
    with open_source(source, what) as f:
        return f.read()


@contextlib.contextmanager
def open_source(source: str, what: str) -> Iterator[Any]:
    """A binary file object for a path or fsspec URL; failures become StageErrors that tell a
    missing file from a refused connection, a missing filesystem package or an unknown scheme."""
    check_no_credentials(source)
    shown = redact_url(source)
    protocol = source.split("://", 1)[0].lower() if "://" in source else "file"
    try:
        import fsspec

        with fsspec.open(source, "rb") as f:
            yield f
    except StageError:
        raise
    except ImportError:
        package = PROTOCOL_PACKAGES.get(protocol, f"the fsspec filesystem for {protocol}://")
        raise StageError(f"{what}: reading {protocol}:// URLs needs the package '{package}', which "
                         "is not installed", where=shown,
                         fix=f"pip install {package} (and give its credentials through the "
                         "environment), or copy the file locally") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(what, shown, exc.object[exc.start]) from None
    except ValueError as exc:
        if "protocol not known" in str(exc).lower():
            raise StageError(f"{what}: unknown URL scheme '{protocol}://'", where=shown,
                             fix="use a local path or an fsspec URL (s3://, gs://, https://...)"
                             ) from None
        raise
    except OSError as exc:
        connection = _connection_error(exc)
        if connection is not None:
            raise StageError(f"{what}: could not connect to the server ({connection})",
                             where=shown, fix="check the host and port, that the server is "
                             "up, and network/proxy settings; then re-run") from None
        if isinstance(exc, FileNotFoundError):
            raise StageError(f"{what} file not found", where=shown,
                             fix="check the path (ingest.source in params.yaml, or --input)"
                             ) from None
        if isinstance(exc, IsADirectoryError):
            raise StageError(f"{what}: {shown} is a directory, not a file", where=shown,
                             fix="point ingest.source (or --input) at one CSV, JSONL or Parquet "
                                 "file inside it") from None
        if exc.errno == errno.ELOOP:
            raise StageError(f"{what}: {shown} is a symbolic link that loops (too many levels "
                             "of links)", where=shown,
                             fix=f"see where it points (`ls -l {shown}`), then make the link "
                                 "name a real file, or point ingest.source at the file") from None
        raise StageError(f"{what} file could not be read: {type(exc).__name__}: "
                         f"{redact_url(str(exc))}", where=shown,
                         fix="check the file's permissions and that it is readable "
                             "(`head` it), then re-run") from None


def _connection_error(exc: BaseException) -> str | None:
    """The connection failure behind ``exc`` (fsspec's http reports it as FileNotFoundError)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        name = type(cur).__name__
        if isinstance(cur, ConnectionError) or "Connect" in name or "Timeout" in name:
            return f"{name}: {redact_url(str(cur))[:200]}"
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return None


def read_table(source: str, what: str, string_columns: tuple[str, ...] = STRING_COLUMNS
               ) -> pd.DataFrame:
    """Read a CSV, JSONL (or JSON array) or Parquet table; every user-fixable problem is a
    :class:`StageError` naming the file, the line/row and column, and the fix.

    Columns named in ``string_columns`` must hold strings; other columns may hold strings or
    numbers (an integer ``id`` is fine) but not lists or dicts.
    """
    table_format(source, what)  # an unsupported name is refused before anything is read
    return read_table_bytes(read_bytes(source, what), source, what, string_columns)


def read_table_bytes(raw: bytes, path: str, what: str,
                     string_columns: tuple[str, ...] = STRING_COLUMNS) -> pd.DataFrame:
    """A table from a file's bytes (e.g. one read from git), the format named by ``path``'s
    suffix; the same checks and messages as :func:`read_table`."""
    fmt = table_format(path, what)
    (df,) = _checked_frames(io.BytesIO(raw), fmt, table_compression(path), what, redact_url(path),
                            None, string_columns)
    return df


def iter_table_chunks(source: str, what: str, chunk_rows: int = 10_000,
                      string_columns: tuple[str, ...] = ("text",)) -> Iterator[pd.DataFrame]:
    """The table in chunks of at most ``chunk_rows`` rows, for bounded memory (predict).

    Parquet is read by row group batches, CSV with pandas' chunked reader, JSON Lines line by
    line; every chunk gets the checks :func:`read_table` applies (a JSON array is parsed whole).
    A table without rows raises, as in :func:`read_table`.
    """
    fmt = table_format(source, what)
    with open_source(source, what) as f:
        yield from _checked_frames(f, fmt, table_compression(source), what, redact_url(source),
                                   chunk_rows, string_columns)


def _checked_frames(f: Any, fmt: str, compression: str | None, what: str, shown: str,
                    chunk_rows: int | None, string_columns: tuple[str, ...]
                    ) -> Iterator[pd.DataFrame]:
    """The one reading path of both readers: ``f`` (a seekable binary file, ``compression`` as
    its name says) as one frame (``chunk_rows`` None) or in chunks, each frame's values checked;
    a file without rows raises."""
    import zlib

    with _decompressed(f, fmt, compression, what, shown) as f:
        try:
            yield from _frames(f, fmt, what, shown, chunk_rows, string_columns)
        except (EOFError, OSError, zlib.error) as exc:
            # a stream cut short or damaged is found only where the readers reach it
            if compression is None:
                raise
            raise _damaged_compressed(what, shown, compression, exc) from None


def _frames(f: Any, fmt: str, what: str, shown: str, chunk_rows: int | None,
            string_columns: tuple[str, ...]) -> Iterator[pd.DataFrame]:
    whole = chunk_rows is None
    # the whole file is in memory anyway; a stream is judged empty by its first 64 KiB
    start = f.read(-1 if whole else 1 << 16)
    f.seek(0)
    if not start.strip():
        raise StageError(f"{what} file is empty", where=shown, fix="provide at least one row")
    if start.startswith(PARQUET_MAGIC) and fmt != "parquet":
        raise StageError(f"{what} file is Parquet (it starts with the bytes 'PAR1') but is named "
                         f"as {fmt}", where=shown, fix="rename it to .parquet")
    rows = 0
    for df, locate in _FRAME_READERS[fmt](f, what, shown, chunk_rows):
        if whole and df.empty:
            break
        _check_values(df, what, shown, locate, string_columns)
        rows += len(df)
        yield df
    if rows == 0:
        raise StageError(f"{what} file has no rows", where=shown, fix="provide at least one row")


def _head_shown(head: bytes) -> str:
    text = head.decode("ascii", "replace")
    return repr(text) if text.isprintable() else "the bytes " + head.hex(" ")


def _sniffed_compression(head: bytes) -> str | None:
    return next((c for magic, c in COMPRESSION_MAGIC.items() if head.startswith(magic)), None)


@contextlib.contextmanager
def _decompressed(f: Any, fmt: str, compression: str | None, what: str, shown: str
                  ) -> Iterator[Any]:
    """``f`` decompressed as its name says (``f`` itself when uncompressed), after checking the
    name against the file's first bytes: gzip bytes in a ``.csv``, or plain text in a
    ``.csv.gz``, are refused with the compression named."""
    head = f.read(4)
    f.seek(0)
    sniffed = _sniffed_compression(head)
    name = PurePosixPath(_file_name(shown)).name
    if not head or (compression is None and sniffed is None):
        yield f
        return
    if sniffed == "zip" and _is_excel(f):
        raise StageError(f"{what} file {name} is an Excel workbook, not {FORMAT_NAMES[fmt]}",
                         where=shown, fix="export the sheet as CSV UTF-8 (File > Save As), "
                         "or as .jsonl/.parquet")
    if compression is None:
        raise _named_plainly(what, name, shown, fmt, sniffed)
    if sniffed != compression:
        plain = name[: -len(COMPRESSION_SUFFIX[compression])]
        really = "not compressed" if sniffed is None else f"{sniffed}-compressed"
        renamed = plain if sniffed is None else plain + COMPRESSION_SUFFIX[sniffed]
        raise StageError(f"{what} file {name} is named as {compression}-compressed but is "
                         f"{really} (it starts with {_head_shown(head)})", where=shown,
                         fix=f"rename it to {renamed}")
    with _open_compressed(f, compression, what, name, shown) as inner:
        yield inner


@contextlib.contextmanager
def _open_compressed(f: Any, compression: str, what: str, name: str, shown: str
                     ) -> Iterator[Any]:
    """A seekable binary stream of the decompressed bytes (readers rewind to the start)."""
    import bz2
    import gzip
    import zipfile

    if compression == "gzip":
        with gzip.GzipFile(fileobj=f, mode="rb") as inner:
            yield inner
    elif compression == "bz2":
        with bz2.BZ2File(f, mode="rb") as inner:
            yield inner
    elif compression == "zstd":
        if not _zstd_available():
            raise StageError(f"{what} file {name} is zstd-compressed, and reading zstd needs the "
                             "package 'zstandard', which is not installed", where=shown,
                             fix=f"decompress it (unzstd {name}) and point at the "
                             "uncompressed file, or pip install zstandard")
        import zstandard

        # zstd streams cannot rewind: the decompressed table is held in memory
        try:
            inner = io.BytesIO(_zstd_decompressed(f.read()))
        except zstandard.ZstdError as exc:
            raise _damaged_compressed(what, shown, "zstd", exc) from None
        yield inner
    else:
        try:
            archive = zipfile.ZipFile(f)
        except zipfile.BadZipFile as exc:
            raise _damaged_compressed(what, shown, "zip", exc) from None
        with archive:
            # folders and the resource forks macOS adds (__MACOSX/) are not files of the table
            members = [m for m in archive.namelist()
                       if not m.endswith("/") and not m.startswith("__MACOSX/")]
            if len(members) != 1:
                raise StageError(f"{what} file {name} holds {len(members)} files "
                                 f"{members[:5]}, not one", where=shown,
                                 fix="zip only the table (one file), or unzip it and point at "
                                 "the table")
            try:
                inner = archive.open(members[0])
            except RuntimeError as exc:  # zipfile's word for an encrypted member
                raise StageError(f"{what} file {name} could not be opened: {exc}", where=shown,
                                 fix="unzip it (with its password) and point at the table"
                                 ) from None
            with inner:
                yield inner


def _zstd_available() -> bool:
    return importlib.util.find_spec("zstandard") is not None


def _zstd_decompressed(raw: bytes) -> bytes:
    """Every frame of ``raw``; a frame cut short raises (zstandard's readers return what they
    have, which would silently drop the end of the table)."""
    import zstandard

    parts = []
    while raw:
        frame = zstandard.ZstdDecompressor().decompressobj()
        parts.append(frame.decompress(raw))
        if not frame.eof:
            raise zstandard.ZstdError("the data ends inside a frame")
        raw = frame.unused_data
    return b"".join(parts)


def _is_excel(f: Any) -> bool:
    """Whether a zip file is an Excel workbook (an .xlsx is a zip holding xl/workbook.xml)."""
    import zipfile

    try:
        with zipfile.ZipFile(f) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False
    finally:
        f.seek(0)


def _named_plainly(what: str, name: str, shown: str, fmt: str, sniffed: str) -> StageError:
    """A compressed file named as plain text (or as Parquet)."""
    tool = DECOMPRESS_COMMAND[sniffed]
    renamed = name + COMPRESSION_SUFFIX[sniffed]
    if fmt == "parquet":
        fix = (f"decompress it ({tool}); Parquet compresses its own columns, so a .parquet is "
               "read as it is")
    elif sniffed == "zstd" and not _zstd_available():
        fix = (f"decompress it (mv {name} {renamed} && unzstd {renamed}), or pip install "
               f"zstandard and rename it to {renamed} (read directly)")
    else:
        fix = f"rename it to {renamed} (read directly) or decompress it ({tool})"
    kind = "Parquet" if fmt == "parquet" else f"{FORMAT_NAMES[fmt]} text"
    return StageError(f"{what} file {name} is {sniffed}-compressed, not {kind}", where=shown,
                      fix=fix)


def _damaged_compressed(what: str, shown: str, compression: str, exc: BaseException
                        ) -> StageError:
    return StageError(f"{what} file could not be decompressed as {compression} (truncated or "
                      f"damaged?): {type(exc).__name__}: {exc}", where=shown,
                      fix=f"re-create it (test it with {DECOMPRESS_COMMAND[compression]} -t), "
                      "or provide the uncompressed file")


def _not_utf8(what: str, where: str, byte: int, offset: int | None = None) -> StageError:
    at = "" if offset is None else f" at offset {offset}"
    return StageError(f"{what} file is not valid UTF-8 (byte 0x{byte:02x}{at})", where=where,
                      fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def _extra_fields(df: pd.DataFrame, what: str, shown: str, header: list[str]) -> StageError:
    """Rows longer than the header: pandas took each row's extra leading fields as an index.
    Only extra fields that are all empty are blamed on trailing commas."""
    extra = df.index.nlevels
    # the rows as written: index fields, then the columns; what is beyond the header is extra
    beyond = df.reset_index().iloc[:, len(header):].to_numpy().ravel()
    fields = "one more field" if extra == 1 else f"{extra} more fields"
    if all(v is None or v != v or (isinstance(v, str) and not v.strip()) for v in beyond):
        empty, cause = ("an empty one", "a trailing comma") if extra == 1 else \
            ("all empty", "trailing commas")
        return StageError(f"{what} file: every row has {fields} than the header {header}, "
                          f"{empty} ({cause} at the end of each line?)", where=f"{shown}, line 2",
                          fix="remove the trailing commas, or add the missing column name to "
                          "the header")
    return StageError(f"{what} file: line 2 has {fields} than the header {header}, not empty "
                      "(an unquoted comma inside a value, or a column name missing from the "
                      "header?)", where=f"{shown}, line 2",
                      fix="quote fields that contain commas (any CSV writer does), or add the "
                      "missing column name(s) to the header")


def _unparsable_csv(what: str, shown: str, exc: Exception) -> StageError:
    return StageError(f"{what} file could not be parsed as CSV: {exc}", where=shown,
                      fix="quote fields that contain commas, quotes or newlines "
                      "(any CSV writer does)")


def _damaged_parquet(what: str, shown: str, exc: Exception) -> StageError:
    return StageError(f"{what} file could not be read as Parquet (truncated or damaged?): "
                      f"{exc}", where=shown, fix="re-export it")


def _not_parquet(what: str, shown: str, head: bytes) -> StageError:
    looks = "CSV or JSON text" if head[:1].isascii() else "not Parquet"
    return StageError(f"{what} file is named .parquet but is {looks} (no 'PAR1' header)",
                      where=shown, fix="rename it to the format it really is (.csv, .jsonl)")


def _text(raw: bytes, what: str, shown: str) -> str:
    """A text table's content: UTF-8 without a BOM and without NUL bytes."""
    text = _decode(raw, what, shown)
    nul = text.find("\x00")
    if nul >= 0:
        raise StageError(f"{what} file contains a NUL byte (\\x00): a binary or corrupt file",
                         where=f"{shown}, line {text.count(chr(10), 0, nul) + 1}",
                         fix="remove the NUL bytes or re-export the file as plain UTF-8 text")
    return text


def _parquet_frames(f: Any, what: str, shown: str, chunk_rows: int | None) -> Iterator[tuple]:
    if chunk_rows is None:
        yield _parse_parquet(f.read(), what, shown)
    else:
        yield from _parquet_chunks(f, what, shown, chunk_rows)


def _csv_frames(f: Any, what: str, shown: str, chunk_rows: int | None) -> Iterator[tuple]:
    if chunk_rows is None:
        yield _parse_csv(_text(f.read(), what, shown), what, shown)
    else:
        yield from _csv_chunks(f, what, shown, chunk_rows)


def _jsonl_frames(f: Any, what: str, shown: str, chunk_rows: int | None) -> Iterator[tuple]:
    if chunk_rows is None:
        yield _parse_json(_text(f.read(), what, shown), what, shown)
    else:
        yield from _jsonl_chunks(f, what, shown, chunk_rows)


def _decode(raw: bytes, what: str, shown: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _not_utf8(what, f"{shown}, line {line}", raw[exc.start], exc.start) from None
    return text.removeprefix("\ufeff")  # a BOM is not part of the first column's name


def _jsonl_object(line: str, lineno: int, what: str, shown: str) -> dict:
    """One JSON Lines row: an object with no key twice, or an error naming its line."""
    try:
        item = json.loads(line, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise StageError(f"{what} file: line {lineno} is not valid JSON ({exc.msg} at column "
                         f"{exc.colno})", where=f"{shown}, line {lineno}",
                         fix="fix or remove that line; each line must be one JSON object"
                         ) from None
    except _DuplicateKey as exc:
        raise StageError(f"{what} file: line {lineno} has the key {exc.key!r} twice",
                         where=f"{shown}, line {lineno}", fix="keep one value per key") from None
    if not isinstance(item, dict):
        raise StageError(f"{what} file: line {lineno} is a JSON {_json_type(item)}, not an "
                         "object", where=f"{shown}, line {lineno}",
                         fix='each line must be an object like {"id": ..., "text": ...}')
    return item


def _csv_header(lines: Iterator[str], what: str, shown: str) -> list[str]:
    """The header row's names, from the table's lines (read only up to the header). Refused: a
    comment/preamble above the header, and a header that is one field holding ; tab or | (another
    format)."""
    comments: list[tuple[int, str]] = []  # the '#' lines above the first other line
    first, first_lineno = "", 0
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue  # blank lines above the header are skipped, as pandas does
        if line.startswith("#"):
            comments.append((lineno, line))
            continue
        first, first_lineno = line, lineno
        break
    if comments:
        start, comment = comments[0]
        if first and _is_preamble(comment, first):
            last = first_lineno - 1
            span, verb = (f"line {start}", "is") if start == last else \
                (f"lines {start}-{last}", "are")
            raise StageError(f"{what} file: {span} {verb} a comment/preamble above the header "
                             f"({_preview(comment)})", where=f"{shown}, line {start}",
                             fix=f"delete {span}, so that the header ({_preview(first)}) is the "
                             "first line ('#' lines are not skipped: an id or a text may start "
                             "with '#')")
        first = comment  # the header itself, its first name starting with '#' ("#,id,text")
    header = next(csv.reader([first])) if first else []
    if len(header) == 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in first:
                raise StageError(
                    f"{what} file looks {name}-delimited (header {first[:80]!r}), but a .csv "
                    "here must be comma-separated", where=f"{shown}, line 1",
                    fix="re-save it comma-separated, or as .jsonl/.parquet")
    _check_header(header, what, f"{shown}, line 1")
    return header


def _is_preamble(comment: str, header: str) -> bool:
    """Whether a '#' line above the first other line is a comment rather than the header: a
    comment reads "# ..." or has another number of fields than the line below it ("#,id,text"
    above "1,t1,hi" is a header with a row-number column named '#')."""
    def width(line: str) -> int:
        return len(next(csv.reader([line])))

    return comment.startswith("# ") or width(comment) != width(header)


def _parse_csv(text: str, what: str, shown: str) -> tuple[pd.DataFrame, Any]:
    import pandas as pd

    header = _csv_header(io.StringIO(text, newline=""), what, shown)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise _unparsable_csv(what, shown, exc) from None
    if not isinstance(df.index, pd.RangeIndex):
        raise _extra_fields(df, what, shown, header)

    def locate(i: int) -> str:
        return f"line {i + 2} (row {i + 1})"  # header is line 1; quoted newlines aside

    return df, locate


def _parse_json(text: str, what: str, shown: str) -> tuple[pd.DataFrame, Any]:
    """JSON Lines, or one JSON array of objects (in a .json file); errors by line number."""
    import pandas as pd

    stripped = text.lstrip()
    records: list[dict] = []
    lines: list[int] = []
    if stripped.startswith("["):
        try:
            data = json.loads(stripped, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise StageError(f"{what} file is a JSON array that does not parse: {exc.msg}",
                             where=f"{shown}, line {exc.lineno}, column {exc.colno}",
                             fix="fix the JSON there, or write one JSON object per line "
                             "(JSON Lines)") from None
        except _DuplicateKey as exc:
            raise StageError(f"{what} file: an object has the key {exc.key!r} twice",
                             where=shown, fix="keep one value per key") from None
        if not isinstance(data, list):
            raise StageError(f"{what} file holds one JSON {type(data).__name__}, not rows",
                             where=shown, fix="write one JSON object per line (JSON Lines)")
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise StageError(f"{what} file: array item {i} is a JSON "
                                 f"{_json_type(item)}, not an object", where=shown,
                                 fix='each row must be an object like {"id": ..., "text": ...}')
        records, lines = data, list(range(len(data)))

        def locate(i: int) -> str:
            return f"array item {i}"
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            records.append(_jsonl_object(line, lineno, what, shown))
            lines.append(lineno)

        def locate(i: int) -> str:
            return f"line {lines[i]}"
    return (_records_frame(records) if records else pd.DataFrame()), locate


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _json_type(value: Any) -> str:
    return {list: "array", dict: "object", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")


def _parse_parquet(raw: bytes, what: str, shown: str) -> tuple[pd.DataFrame, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not raw.startswith(PARQUET_MAGIC):
        raise _not_parquet(what, shown, raw)
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _damaged_parquet(what, shown, exc) from None
    _check_header(table.column_names, what, shown)
    df = table.to_pandas()

    def locate(i: int) -> str:
        return f"row {i} (0-based)"

    return df, locate


def _check_header(names: list[str], what: str, where: str) -> None:
    stripped = [str(n).strip() for n in names]
    dups = sorted({n for n in stripped if stripped.count(n) > 1})
    if dups:
        raise StageError(f"{what} file has duplicate column name(s) {dups} in its header "
                         f"{list(names)}", where=where,
                         fix="give every column one unique name (drop or rename the extra)")


def _check_values(df: pd.DataFrame, what: str, shown: str, locate: Any,
                  string_columns: tuple[str, ...]) -> None:
    """Refuse non-string texts/labels, nested values, non-UTF-8 bytes and NUL characters."""
    for col in df.columns:
        name = str(col).strip()
        series = df[col]
        if series.dtype.kind in "iu" and name not in string_columns:
            continue
        if series.dtype.kind in "fbiuc" or (series.dtype.kind == "M"):
            if name in string_columns or series.dtype.kind == "b":
                i = int(series.notna().to_numpy().argmax())
                raise StageError(f"{what}: column '{name}' holds {series.dtype} values, not "
                                 f"strings (e.g. {series.iloc[i]!r} at {locate(i)})",
                                 where=f"{shown}, column '{name}'",
                                 fix=f"write '{name}' as strings (quote it in JSON)")
            continue
        for i, value in enumerate(series.tolist()):
            if value is None or isinstance(value, str):
                if value is not None and "\x00" in value:
                    raise StageError(f"{what}: column '{name}' at {locate(i)} contains a NUL "
                                     "character (\\x00)", where=f"{shown}, {locate(i)}",
                                     fix="remove NUL characters; they come from a corrupt or "
                                     "binary export")
                continue
            if isinstance(value, bytes | bytearray):
                try:
                    df.at[df.index[i], col] = bytes(value).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise StageError(
                        f"{what}: column '{name}' at {locate(i)} holds bytes that are not UTF-8 "
                        f"(byte 0x{value[exc.start]:02x} at offset {exc.start})",
                        where=f"{shown}, column '{name}'",
                        fix="store the column as UTF-8 strings (decode it with the encoding it "
                        "was written in, e.g. latin-1, before writing the Parquet file)") from None
                continue
            if isinstance(value, float) and value != value:  # NaN: a missing value
                continue
            scalar = isinstance(value, int | float) and not isinstance(value, bool)
            if scalar and name not in string_columns:
                continue
            kind = _json_type(value) if not hasattr(value, "tolist") else "array"
            article = "an" if kind[0] in "aeiou" else "a"
            raise StageError(f"{what}: column '{name}' at {locate(i)} is {article} {kind} "
                             f"({_preview(value)}), not a string", where=f"{shown}, {locate(i)}",
                             fix=f"every '{name}' must be a plain string"
                             + (" (quote numbers)" if scalar or kind == "boolean" else ""))


def _preview(value: Any) -> str:
    text = repr(value.tolist() if hasattr(value, "tolist") else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parquet_chunks(f: Any, what: str, shown: str, chunk_rows: int) -> Iterator[tuple]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    head = f.read(len(PARQUET_MAGIC))
    if head != PARQUET_MAGIC:
        raise _not_parquet(what, shown, head)
    f.seek(0)
    try:
        pf = pq.ParquetFile(f)
        _check_header(pf.schema_arrow.names, what, shown)
        start = 0
        for batch in pf.iter_batches(batch_size=chunk_rows):
            offset = start
            yield batch.to_pandas(), (lambda i, o=offset: f"row {o + i} (0-based)")
            start += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise _damaged_parquet(what, shown, exc) from None


def _csv_chunks(f: Any, what: str, shown: str, chunk_rows: int) -> Iterator[tuple]:
    import pandas as pd

    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    header = _csv_header(iter(text.readline, ""), what, shown)
    text.seek(0)
    try:
        reader = pd.read_csv(text, dtype=str, keep_default_na=False, na_values=[""],
                             chunksize=chunk_rows)
        start = 0
        for chunk in reader:
            if not isinstance(chunk.index, pd.RangeIndex):
                raise _extra_fields(chunk, what, shown, header)
            offset = start
            yield chunk.reset_index(drop=True), (lambda i, o=offset: f"line {o + i + 2}")
            start += len(chunk)
    except UnicodeDecodeError as exc:
        raise _not_utf8(what, shown, exc.object[exc.start]) from None
    except (ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, pd.errors.EmptyDataError):
            return
        raise _unparsable_csv(what, shown, exc) from None


def _jsonl_chunks(f: Any, what: str, shown: str, chunk_rows: int) -> Iterator[tuple]:
    first = f.read(1 << 12).lstrip()
    f.seek(0)
    if first.startswith(b"["):  # one JSON array: no streaming form, parsed whole
        df, locate = _parse_json(_decode(f.read(), what, shown), what, shown)
        for start in range(0, len(df), chunk_rows):
            part = df.iloc[start:start + chunk_rows].reset_index(drop=True)
            yield part, (lambda i, o=start: locate(o + i))
        return
    records: list[dict] = []
    lines: list[int] = []
    for lineno, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(what, f"{shown}, line {lineno}", raw[exc.start]) from None
        records.append(_jsonl_object(line, lineno, what, shown))
        lines.append(lineno)
        if len(records) == chunk_rows:
            yield _records_frame(records), (lambda i, ls=lines: f"line {ls[i]}")
            records, lines = [], []
    if records:
        yield _records_frame(records), (lambda i, ls=lines: f"line {ls[i]}")


def _records_frame(records: list[dict]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    return df.astype(object).where(df.notna(), None)


# the one format dispatch of both readers (a chunk reader reads the whole file when chunk_rows
# is None)
_FRAME_READERS = {"parquet": _parquet_frames, "csv": _csv_frames, "jsonl": _jsonl_frames}
