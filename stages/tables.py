"""The one reader of user tables (CSV, JSONL/JSON, Parquet; a path or an fsspec URL).

ingest, the golden test set of split and predict all read through :func:`read_table`, so every
malformed file gets the same kind of message: what the file looks like, where (line or row and
column) and how to fix it. The reader sniffs instead of trusting the name: Parquet bytes in a
``.csv``, a semicolon- or tab-delimited ``.csv``, a trailing comma on every row, a JSON array in a
``.json``, duplicate header names, values that are not strings (lists, dicts, numbers, booleans
where a text or label belongs), bytes that are not UTF-8 and NUL bytes are all refused by name.

URLs: credentials inside a URL (``https://user:pass@host/...``) are refused (they would land in
logs, events and dvc.lock); every URL that reaches a log line or a message goes through
:func:`stages.common.redact_url`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
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


def table_format(source: str, what: str) -> str:
    """The format named by the file's suffix (a URL's query string, e.g. a signature, ignored)."""
    from urllib.parse import urlsplit

    name = urlsplit(source).path if "://" in source else source
    suffix = next((s for s in TABLE_FORMATS if name.lower().endswith(s)), None)
    if suffix is None:
        raise StageError(f"{what}: unsupported file type", where=redact_url(source),
                         fix=f"use one of {sorted(TABLE_FORMATS)}")
    return TABLE_FORMATS[suffix]


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
        raise StageError(f"{what} file is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})",
                         where=shown, fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t "
                         "utf-8)") from None
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
        raise StageError(f"{what} file could not be read: {type(exc).__name__}: "
                         f"{redact_url(str(exc))}", where=shown) from None


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
    fmt = table_format(source, what)
    raw = read_bytes(source, what)
    shown = redact_url(source)
    if not raw.strip():
        raise StageError(f"{what} file is empty", where=shown, fix="provide at least one row")
    if raw.startswith(PARQUET_MAGIC) and fmt != "parquet":
        raise StageError(f"{what} file is Parquet (it starts with the bytes 'PAR1') but is named "
                         f"as {fmt}", where=shown, fix="rename it to .parquet")
    if fmt == "parquet":
        df, locate = _parse_parquet(raw, what, shown)
    else:
        text = _decode(raw, what, shown)
        nul = text.find("\x00")
        if nul >= 0:
            raise StageError(f"{what} file contains a NUL byte (\\x00): a binary or corrupt file",
                             where=f"{shown}, line {text.count(chr(10), 0, nul) + 1}",
                             fix="remove the NUL bytes or re-export the file as plain UTF-8 text")
        if fmt == "csv":
            df, locate = _parse_csv(text, what, shown)
        else:
            df, locate = _parse_json(text, what, shown)
    if df.empty:
        raise StageError(f"{what} file has no rows", where=shown, fix="provide at least one row")
    _check_values(df, what, shown, locate, string_columns)
    return df


def _decode(raw: bytes, what: str, shown: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StageError(
            f"{what} file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            where=f"{shown}, line {line}",
            fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
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


def _csv_header(first: str, what: str, shown: str) -> list[str]:
    """The header row's names; a header that is one field holding ; tab or | is another format."""
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


def _parse_csv(text: str, what: str, shown: str) -> tuple[pd.DataFrame, Any]:
    import pandas as pd

    first = text.lstrip("\r\n").splitlines()[0]
    header = _csv_header(first, what, shown)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{what} file could not be parsed as CSV: {exc}", where=shown,
                         fix="quote fields that contain commas, quotes or newlines "
                         "(any CSV writer does)") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas takes the extra leading field of every row as an index: rows are one longer
        raise StageError(f"{what} file: every row has one more field than the header "
                         f"{header} (a trailing comma at the end of each line?)",
                         where=f"{shown}, line 2",
                         fix="remove the trailing commas, or add the missing column name to the "
                         "header") from None

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
        looks = "CSV or JSON text" if raw[:1].isascii() else "not Parquet"
        raise StageError(f"{what} file is named .parquet but is {looks} (no 'PAR1' header)",
                         where=shown, fix="rename it to the format it really is (.csv, .jsonl)")
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StageError(f"{what} file could not be read as Parquet (truncated or damaged?): "
                         f"{exc}", where=shown, fix="re-export it") from None
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


def iter_table_chunks(source: str, what: str, chunk_rows: int = 10_000,
                      string_columns: tuple[str, ...] = ("text",)) -> Iterator[pd.DataFrame]:
    """The table in chunks of at most ``chunk_rows`` rows, for bounded memory (predict).

    Parquet is read by row group batches, CSV with pandas' chunked reader, JSON Lines line by
    line; every chunk gets the checks :func:`read_table` applies (a JSON array is parsed whole).
    A table without rows raises, as in :func:`read_table`.
    """
    fmt = table_format(source, what)
    shown = redact_url(source)
    rows = 0
    with open_source(source, what) as f:
        head = f.read(len(PARQUET_MAGIC))
        f.seek(0)
        if not head.strip() and not f.read(1 << 16).strip():
            raise StageError(f"{what} file is empty", where=shown, fix="provide at least one row")
        f.seek(0)
        if head == PARQUET_MAGIC and fmt != "parquet":
            raise StageError(f"{what} file is Parquet (it starts with the bytes 'PAR1') but is "
                             f"named as {fmt}", where=shown, fix="rename it to .parquet")
        if fmt == "parquet":
            chunks = _parquet_chunks(f, what, shown, chunk_rows)
        elif fmt == "csv":
            chunks = _csv_chunks(f, what, shown, chunk_rows)
        else:
            chunks = _jsonl_chunks(f, what, shown, chunk_rows)
        for df, locate in chunks:
            _check_values(df, what, shown, locate, string_columns)
            rows += len(df)
            yield df
    if rows == 0:
        raise StageError(f"{what} file has no rows", where=shown, fix="provide at least one row")


def _parquet_chunks(f: Any, what: str, shown: str, chunk_rows: int) -> Iterator[tuple]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if f.read(len(PARQUET_MAGIC)) != PARQUET_MAGIC:
        raise StageError(f"{what} file is named .parquet but has no 'PAR1' header",
                         where=shown, fix="rename it to the format it really is (.csv, .jsonl)")
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
        raise StageError(f"{what} file could not be read as Parquet (truncated or damaged?): "
                         f"{exc}", where=shown, fix="re-export it") from None


def _csv_chunks(f: Any, what: str, shown: str, chunk_rows: int) -> Iterator[tuple]:
    import pandas as pd

    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    first = text.readline().rstrip("\r\n")
    header = _csv_header(first, what, shown)
    text.seek(0)
    try:
        reader = pd.read_csv(text, dtype=str, keep_default_na=False, na_values=[""],
                             chunksize=chunk_rows)
        start = 0
        for chunk in reader:
            if not isinstance(chunk.index, pd.RangeIndex):
                raise StageError(f"{what} file: every row has one more field than the header "
                                 f"{header} (a trailing comma at the end of each line?)",
                                 where=f"{shown}, line 2", fix="remove the trailing commas")
            offset = start
            yield chunk.reset_index(drop=True), (lambda i, o=offset: f"line {o + i + 2}")
            start += len(chunk)
    except UnicodeDecodeError as exc:
        raise StageError(f"{what} file is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})",
                         where=shown, fix="re-save the file as UTF-8") from None
    except (ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, pd.errors.EmptyDataError):
            return
        raise StageError(f"{what} file could not be parsed as CSV: {exc}", where=shown,
                         fix="quote fields that contain commas, quotes or newlines") from None


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
            raise StageError(f"{what} file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                             where=f"{shown}, line {lineno}", fix="re-save the file as UTF-8"
                             ) from None
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
