"""The bad-input catalogue: every case runs the real ``python -m stages.<x>`` and asserts

1. the exit code (1, through run_cli),
2. the message: what went wrong (a phrase), where (``where:`` with the file/line/param), and
   how to fix it (``fix:``),
3. that nothing was written: the outputs of an earlier good run are byte-for-byte unchanged.

Cases sharing a setup share one directory (one good run first), and each case points the stage
at its own params file through RETRAINER_PARAMS, so the catalogue stays fast.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests import helpers
from tests.conftest import REPO_ROOT, TINY_TRAIN, make_rows, set_params, write_csv, write_tiny_splits
from tests.helpers import run_module

COMMANDS = {"predict", "promote"}  # not DVC stages: python -m commands.<name>


def module(stage: str) -> str:
    return f"{'commands' if stage in COMMANDS else 'stages'}.{stage}"


def run(stage: str, cwd: Path, *args: str, params: Path | None = None
        ) -> subprocess.CompletedProcess:
    return run_module(module(stage), cwd, *args,
                      env={"RETRAINER_PARAMS": str(params)} if params else None)


def snapshot(root: Path, rels: list[str]) -> dict[str, str | None]:
    """sha256 of each output (None: absent), to prove a failed run changed nothing."""
    out = {}
    for rel in rels:
        p = root / rel
        if p.is_dir():
            out[rel] = hashlib.sha256(b"".join(
                f.relative_to(p).as_posix().encode() + f.read_bytes()
                for f in sorted(p.rglob("*")) if f.is_file())).hexdigest()
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return out


def assert_clear_error(proc: subprocess.CompletedProcess, stage: str, what: str,
                       where: str, fix: str) -> None:
    helpers.assert_clear_error(proc, module(stage), what, where, fix)


# ============================================================================ ingest

GOOD_TEXTS, GOOD_LABELS = make_rows(3)
INGEST_OUT = ["data/raw/texts.parquet", "data/labels/labels.parquet"]


def _csv(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _zip(*members: tuple[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, content in members:
            archive.writestr(name, content)
    return buf.getvalue()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


@dataclass
class Case:
    name: str
    texts: tuple[str, str | bytes] | str | None  # (file name, content) or a source string
    labels: tuple[str, str | bytes] | str | None
    what: str
    where: str
    fix: str
    params: dict | None = None
    secret: str | None = None  # must never be printed


T, L = GOOD_TEXTS, GOOD_LABELS
ROWS = [{**t, "label": lab["label"]} for t, lab in zip(T, L, strict=True)]

INGEST_CASES = [
    Case("semicolon-csv", ("t.csv", "id;text\nt1;hello\nt2;world\n"), None,
         "looks semicolon-delimited", "t.csv, line 1", "comma-separated"),
    Case("tab-csv", ("t.csv", "id\ttext\nt1\thello\n"), None,
         "looks tab-delimited", "t.csv, line 1", "comma-separated"),
    Case("parquet-named-csv", ("t.csv", _parquet(pa.table({"id": ["t1"], "text": ["hi"]}))), None,
         "is Parquet", "t.csv", "rename it to .parquet"),
    Case("csv-named-parquet", ("t.parquet", "id,text\nt1,hi\n"), None,
         "named .parquet but is CSV or JSON text", "t.parquet", "rename it"),
    Case("trailing-comma", ("t.csv", "id,text\n" + "".join(f"{r['id']},{r['text']},\n" for r in T)),
         None, "one more field than the header", "t.csv, line 2", "remove the trailing commas"),
    Case("broken-jsonl-line", ("t.jsonl", _jsonl(T[:2]) + '{"id": "x", "text": \n' + _jsonl(T[2:])),
         None, "line 3 is not valid JSON", "t.jsonl, line 3", "fix or remove that line"),
    Case("jsonl-line-not-object", ("t.jsonl", _jsonl(T[:1]) + '["t9", "hi"]\n'), None,
         "line 2 is a JSON array, not an object", "t.jsonl, line 2", "each line must be an object"),
    Case("json-array-of-non-objects", ("t.json", json.dumps([T[0], 42])), None,
         "array item 1 is a JSON number", "t.json", "each row must be an object"),
    Case("json-array-broken", ("t.json", "[\n" + json.dumps(T[0]) + ",\n{\"id\": }\n]"), None,
         "JSON array that does not parse", "t.json, line 3", "fix the JSON there"),
    Case("jsonl-text-list", ("t.jsonl", _jsonl(T[:1] + [{"id": "x1", "text": ["a", "b"]}])), None,
         "column 'text' at line 2 is an array", "t.jsonl, line 2", "plain string"),
    Case("jsonl-text-dict", ("t.jsonl", _jsonl([{"id": "x1", "text": {"body": "hi"}}] + T[:1])),
         None, "column 'text' at line 1 is an object", "t.jsonl, line 1", "plain string"),
    Case("jsonl-text-number", ("t.jsonl", _jsonl(T[:2] + [{"id": "x1", "text": 12345}])), None,
         "column 'text' at line 3 is a number", "t.jsonl, line 3", "quote numbers"),
    Case("jsonl-text-boolean", ("t.jsonl", _jsonl(T[:1] + [{"id": "x1", "text": True}])), None,
         "column 'text' at line 2 is a boolean", "t.jsonl, line 2", "plain string"),
    Case("jsonl-label-number", None, ("l.jsonl", _jsonl(L[:1] + [{"id": L[1]["id"], "label": 3}])),
         "column 'label' at line 2 is a number", "l.jsonl, line 2", "quote numbers"),
    Case("parquet-text-int", ("t.parquet", _parquet(pa.table({"id": ["t1"], "text": [7]}))), None,
         "column 'text' holds int64 values", "t.parquet, column 'text'", "as strings"),
    Case("parquet-text-list", ("t.parquet", _parquet(pa.table({"id": ["t1", "t2"],
                                                               "text": [["a"], ["b", "c"]]}))),
         None, "column 'text' at row 0 (0-based) is an array", "t.parquet, row 0", "plain string"),
    Case("parquet-latin1-binary", ("t.parquet", _parquet(pa.table({
        "id": ["t1", "t2"], "text": pa.array([b"ok", "caf\xe9".encode("latin-1")], pa.binary())}))),
         None, "holds bytes that are not UTF-8 (byte 0xe9", "t.parquet, column 'text'",
         "store the column as UTF-8 strings"),
    Case("parquet-truncated", ("t.parquet", _parquet(pa.table({"id": ["t1"], "text": ["hi"]}))[:-20]),
         None, "could not be read as Parquet", "t.parquet", "re-export it"),
    Case("nul-byte-csv", ("t.csv", "id,text\nt1,hel\x00lo\n"), None,
         "contains a NUL byte", "t.csv, line 2", "remove the NUL bytes"),
    Case("nul-char-parquet", ("t.parquet", _parquet(pa.table({"id": ["t1"], "text": ["a\x00b"]}))),
         None, "contains a NUL character", "t.parquet, row 0", "remove NUL characters"),
    Case("duplicate-header", ("t.csv", "id,text,text\nt1,a,b\n"), None,
         "duplicate column name(s) ['text']", "t.csv, line 1", "one unique name"),
    Case("duplicate-json-key", ("t.jsonl", '{"id": "t1", "text": "a", "text": "b"}\n'), None,
         "has the key 'text' twice", "t.jsonl, line 1", "one value per key"),
    Case("ids-differ-by-whitespace", ("t.csv", _csv(T[:2] + [{"id": f" {T[0]['id']}",
                                                               "text": "another text"}])), None,
         "differ only by surrounding whitespace", "t.csv", "trim the ids"),
    Case("id-padded", ("t.csv", 'id,text\n"t00001 ",hello\n'), None,
         "leading or trailing whitespace", "t.csv", "trim the ids"),
    Case("labels-differ-by-case", None, ("l.csv", _csv(
        [L[0], {"id": L[1]["id"], "label": L[0]["label"].upper()}] + L[2:])),
         "differ only by case or spaces", "l.csv", "one spelling per class"),
    Case("labels-differ-by-trailing-space", None, ("l.csv", _csv(
        [L[0], {"id": L[1]["id"], "label": L[0]["label"] + " "}] + L[2:])),
         "differ only by case or spaces", "l.csv", "one spelling per class"),
    Case("latin1-csv", ("t.csv", "id,text\nt1,ok\nt2,caf\xe9\n".encode("latin-1")), None,
         "not valid UTF-8 (byte 0xe9", "t.csv, line 3", "re-save the file as UTF-8"),
    Case("gzip-named-csv", ("texts.csv", gzip.compress(_csv(T).encode(), mtime=0)), None,
         "texts.csv is gzip-compressed, not CSV text", "texts.csv",
         "rename it to texts.csv.gz (read directly) or decompress it (gunzip)"),
    Case("plain-text-named-gz", ("t.csv.gz", _csv(T)), None,
         "t.csv.gz is named as gzip-compressed but is not compressed", "t.csv.gz",
         "rename it to t.csv"),
    Case("truncated-gz", ("t.csv.gz", gzip.compress(_csv(T).encode(), mtime=0)[:-12]), None,
         "could not be decompressed as gzip (truncated or damaged?)", "t.csv.gz", "gunzip -t"),
    Case("zip-with-two-files", ("t.csv.zip", _zip(("a.csv", _csv(T)), ("b.csv", _csv(T)))), None,
         "t.csv.zip holds 2 files ['a.csv', 'b.csv'], not one", "t.csv.zip", "zip only the table"),
    Case("excel-named-csv", ("t.csv", _zip(("[Content_Types].xml", "<Types/>"),
                                           ("xl/workbook.xml", "<workbook/>"))), None,
         "t.csv is an Excel workbook, not CSV", "t.csv", "export the sheet as CSV UTF-8"),
    Case("gzip-parquet", ("t.parquet.gz", gzip.compress(b"PAR1", mtime=0)), None,
         "unsupported file type: a gzip-compressed Parquet file", "t.parquet.gz",
         "decompress it (gunzip)"),
    *([] if importlib.util.find_spec("zstandard") else [
        Case("zst-without-zstandard", ("t.csv.zst", b"\x28\xb5\x2f\xfd" + _csv(T).encode()), None,
             "reading zstd needs the package 'zstandard'", "t.csv.zst", "unzstd t.csv.zst")]),
    Case("comment-above-header", ("t.csv", "# exported from helpdesk 2024-05-01\n" + _csv(ROWS)),
         None, "line 1 is a comment/preamble above the header ('# exported from helpdesk",
         "t.csv, line 1", "delete line 1, so that the header ('id,text,source,label') is the first line"),
    Case("comment-lines-above-header", ("t.csv", "# export\n# by: helpdesk\n" + _csv(T)), None,
         "lines 1-2 are a comment/preamble above the header", "t.csv, line 1", "delete lines 1-2"),
    Case("trailing-commas-two", ("t.csv", "id,text\n" + "".join(f"{r['id']},{r['text']},,\n"
                                                                for r in T)),
         None, "every row has 2 more fields than the header ['id', 'text'], all empty",
         "t.csv, line 2", "remove the trailing commas"),
    Case("unquoted-comma", ("t.csv", "id,text\nt1,hello, world\nt2,fine\n"), None,
         "line 2 has one more field than the header ['id', 'text'], not empty", "t.csv, line 2",
         "quote fields that contain commas"),
    Case("empty-file", ("t.csv", ""), None, "file is empty", "t.csv", "at least one row"),
    Case("header-only", ("t.csv", "id,text\n"), None, "has no rows", "t.csv", "at least one row"),
    Case("missing-column", ("t.csv", "id,body\nt1,hi\n"), None,
         "required column(s) ['text'] missing", "t.csv", "need the columns"),
    Case("unsupported-type", ("t.xlsx", "whatever"), None,
         "unsupported file type", "t.xlsx", "use one of"),
    Case("file-not-found", "cases/nope.csv", None, "file not found", "nope.csv", "check the path"),
    Case("connection-refused", "http://127.0.0.1:{port}/texts.csv", None,
         "could not connect to the server", "http://127.0.0.1:", "check the host and port"),
    Case("s3-without-s3fs", "s3://bucket/texts.csv", None,
         "needs the package 's3fs'", "s3://bucket/texts.csv", "pip install s3fs"),
    Case("unknown-scheme", "foo://bucket/texts.csv", None,
         "unknown URL scheme 'foo://'", "foo://bucket/texts.csv", "fsspec URL"),
    Case("credentials-in-url", "https://alice:hunter2secret@127.0.0.1:1/texts.csv", None,
         "credentials inside a URL are refused", "https://***@127.0.0.1:1/texts.csv",
         "through the environment", secret="hunter2secret"),
    Case("duplicate-id", ("t.csv", _csv(T[:3] + [T[1]])), None,
         "appear more than once", "t.csv", "ids must be unique"),
    Case("empty-id", ("t.csv", "id,text\nt1,hi\n,there\n"), None,
         "with an empty id", "t.csv", "unique id"),
    Case("label-without-text", None, ("l.csv", _csv(L + [{"id": "ghost", "label": "x"}])),
         "have no text with the same id", "l.csv", "every label id must exist"),
    Case("unlabelled-fails", None, ("l.csv", _csv(L[:-1])), "have no label", "t.csv",
         "label them", params={"unlabelled_texts": "fail"}),
]


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a good ingest already done: the outputs every bad case must keep."""
    root = tmp_path_factory.mktemp("bad-ingest")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    write_csv(root / "good/t.csv", GOOD_TEXTS)
    write_csv(root / "good/l.csv", GOOD_LABELS)
    set_params(root, {"ingest": {"source": {"texts": "good/t.csv", "labels": "good/l.csv"}}})
    proc = run("ingest", root)
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.mark.parametrize("case", INGEST_CASES, ids=[c.name for c in INGEST_CASES])
def test_ingest_refuses(case: Case, ingest_dir: Path) -> None:
    root = ingest_dir
    before = snapshot(root, INGEST_OUT)
    case_dir = root / "cases" / case.name
    case_dir.mkdir(parents=True)
    sources = {}
    for key, spec, default in (("texts", case.texts, "good/t.csv"),
                               ("labels", case.labels, "good/l.csv")):
        if spec is None:
            sources[key] = default
        elif isinstance(spec, str):
            sources[key] = spec.format(port=_closed_port()) if "{port}" in spec else spec
        else:
            name, content = spec
            path = case_dir / name
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
            sources[key] = str(path.relative_to(root))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"] = {"source": sources, **(case.params or {})}
    params_file = case_dir / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    proc = run("ingest", root, params=params_file)
    assert_clear_error(proc, "ingest", case.what, case.where, case.fix)
    assert snapshot(root, INGEST_OUT) == before
    if case.secret:
        assert case.secret not in proc.stderr + proc.stdout


@pytest.mark.parametrize("kind", ["directory", "symlink-loop"])
def test_ingest_refuses_a_source_that_is_no_file(kind: str, ingest_dir: Path) -> None:
    """A directory, or a symbolic link that loops, as a source: what it is, and a fix line."""
    root = ingest_dir
    before = snapshot(root, INGEST_OUT)
    case_dir = root / "cases" / kind
    case_dir.mkdir(parents=True)
    source = case_dir / "t.csv"
    if kind == "directory":
        source.mkdir()
        what, fix = "is a directory, not a file", "at one CSV, JSONL or Parquet file inside it"
    else:
        (case_dir / "u.csv").symlink_to(source)
        source.symlink_to(case_dir / "u.csv")
        what, fix = "is a symbolic link that loops", "ls -l"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"] = {"source": {"texts": str(source.relative_to(root)), "labels": "good/l.csv"}}
    params_file = case_dir / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    proc = run("ingest", root, params=params_file)
    assert_clear_error(proc, "ingest", what, f"cases/{kind}/t.csv", fix)
    assert snapshot(root, INGEST_OUT) == before


def test_a_json_array_of_objects_is_read(ingest_dir: Path) -> None:
    """Not an error: a .json holding one array of row objects is a table too."""
    root = ingest_dir / "array-ok"
    shutil.copytree(ingest_dir, root, ignore=shutil.ignore_patterns("cases", "array-ok"))
    (root / "good/t.json").write_text(json.dumps(GOOD_TEXTS))
    set_params(root, {"ingest": {"source": {"texts": "good/t.json", "labels": "good/l.csv"}}})
    proc = run("ingest", root)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(root / INGEST_OUT[0]).set_index("id")["text"].to_dict()
    assert got == {r["id"]: r["text"] for r in GOOD_TEXTS}


# ============================================================================ params

@dataclass
class ParamCase:
    name: str
    stage: str
    edit: object  # {section: {key: value}} merged in, or a function of the YAML text
    what: str
    where: str
    fix: str


def _tabs(text: str) -> str:
    return text.replace("  salt: split-v1", "\tsalt: split-v1", 1)


def _syntax(text: str) -> str:
    return text.replace("  val_fraction: 0.15", "  val_fraction: [0.15", 1)


PARAM_CASES = [
    ParamCase("yaml-syntax", "split", _syntax, "params file is not valid YAML", "line ",
              "fix the syntax at that line"),
    ParamCase("yaml-tabs", "split", _tabs, "tab indentation on line(s)", "line ",
              "indent with spaces only"),
    ParamCase("max-length-0", "train", {"train": {"max_length": 0}},
              "max_length = 0 is out of range: it must be >= 1", "train.max_length", "set a value"),
    ParamCase("log-every-0", "train", {"train": {"log_every": 0}},
              "log_every = 0 is out of range", "train.log_every", ">= 1"),
    ParamCase("eval-batch-size-0", "train", {"train": {"eval_batch_size": 0}},
              "eval_batch_size = 0 is out of range", "train.eval_batch_size", ">= 1"),
    ParamCase("negative-learning-rate", "train", {"train": {"learning_rate": -1e-4}},
              "learning_rate = -0.0001 is out of range: it must be > 0", "train.learning_rate",
              "> 0"),
    ParamCase("zero-head-learning-rate", "train", {"train": {"head_learning_rate": 0}},
              "head_learning_rate = 0.0 is out of range", "train.head_learning_rate", "> 0"),
    ParamCase("nan-learning-rate", "train", {"train": {"learning_rate": float("nan")}},
              "learning_rate = nan is out of range", "train.learning_rate", "> 0"),
    ParamCase("dropout-1", "train", {"train": {"dropout": 1.0}},
              "dropout = 1.0 is out of range: it must be >= 0 and < 1", "train.dropout", "< 1"),
    ParamCase("max-length-above-positions", "train", {"train": {"max_length": 4096}},
              "above the base model's position limit of 128", "train.max_length",
              "at most 128"),
    ParamCase("epochs-not-int", "train", {"train": {"epochs": "ten"}},
              "expected int, got 'ten'", "train.epochs", "set train.epochs to an int"),
    ParamCase("unknown-key", "train", {"train": {"learning_rat": 0.1}},
              "unknown parameter(s) ['learning_rat']", ".yaml:train", "allowed keys"),
    ParamCase("min-rows-negative", "validate", {"validate": {"min_rows": -1}},
              "min_rows = -1 is out of range: it must be >= 0", "validate.min_rows", ">= 0"),
    ParamCase("text-length-min-above-max", "validate",
              {"validate": {"text_length": {"min": 10, "max": 5}}},
              "min 10.0 is above max 5.0", "validate.text_length", "min <= max"),
    ParamCase("conflicting-share-above-1", "validate",
              {"validate": {"max_conflicting_share": 1.5}},
              "max_conflicting_share = 1.5 is out of range", "validate.max_conflicting_share",
              "<= 1"),
    ParamCase("val-fraction-above-1", "split", {"split": {"val_fraction": 1.5}},
              "val_fraction = 1.5 is out of range: it must be > 0 and < 1", "split.val_fraction",
              "< 1"),
    ParamCase("test-fraction-0", "split", {"split": {"test_fraction": 0}},
              "test_fraction = 0.0 is out of range", "split.test_fraction", "> 0"),
    ParamCase("fractions-leave-no-train", "split",
              {"split": {"val_fraction": 0.5, "test_fraction": 0.5}},
              "leaves no rows to train on", ".yaml:split", "val_fraction: 0.15"),
    ParamCase("alpha-0", "gate", {"gate": {"significance": {"alpha": 0}}},
              "alpha = 0.0 is out of range", "gate.significance.alpha", "> 0"),
    ParamCase("length-buckets-decreasing", "evaluate", {"evaluate": {"length_buckets": [160, 60]}},
              "length_buckets must be two increasing positive numbers", "evaluate.length_buckets",
              "[60, 160]"),
    ParamCase("min-agreement-above-1", "quantize", {"quantize": {"min_agreement": 1.5}},
              "min_agreement = 1.5 is out of range", "quantize.min_agreement", "<= 1"),
]


@pytest.fixture(scope="module")
def params_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("bad-params")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    set_params(root, {"train": {"base_model": str(tiny_model_dir), **TINY_TRAIN}})
    return root


@pytest.mark.parametrize("case", PARAM_CASES, ids=[c.name for c in PARAM_CASES])
def test_params_refused_before_any_work(case: ParamCase, params_dir: Path) -> None:
    case_file = params_dir / f"{case.name}.yaml"
    text = (params_dir / "params.yaml").read_text()
    if callable(case.edit):
        case_file.write_text(case.edit(text))
    else:
        params = yaml.safe_load(text)
        for section, values in case.edit.items():
            for key, value in values.items():
                if isinstance(value, dict) and isinstance(params[section].get(key), dict):
                    params[section][key].update(value)
                else:
                    params[section][key] = value
        case_file.write_text(yaml.safe_dump(params, sort_keys=False))
    listing = sorted(p.name for p in params_dir.iterdir())
    proc = run(case.stage, params_dir, params=case_file)
    assert_clear_error(proc, case.stage, case.what, case.where, case.fix)
    # refused at load time: no stage got as far as reading its inputs or writing anything
    assert "not found" not in proc.stderr
    assert sorted(p.name for p in params_dir.iterdir()) == listing


# ============================================================================ champion, state

@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """Splits, a trained tiny checkpoint and a good evaluate run (metrics/eval.json)."""
    root = tmp_path_factory.mktemp("bad-champion")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    write_tiny_splits(root, tiny_model_dir, epochs=1, save_every=2)
    for stage in ("train", "evaluate"):
        proc = run(stage, root)
        assert proc.returncode == 0, proc.stderr
    return root


EVAL_OUT = ["metrics/eval.json", "data/predictions", "plots/confusion.csv"]


def _champion(root: Path, damage) -> None:
    champ = root / "models/champion"
    shutil.rmtree(champ, ignore_errors=True)
    shutil.copytree(root / "models/checkpoint", champ)
    (root / "models/champion.json").write_text(json.dumps(
        {"champion": {"path": "models/champion", "promoted_at": "2026-01-01"}}))
    damage(root, champ)


def _truncate(rel: str, keep: float = 0.5):
    def damage(root: Path, champ: Path) -> None:
        path = champ / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return damage


def _pointer(text: str):
    def damage(root: Path, champ: Path) -> None:
        (root / "models/champion.json").write_text(text)
    return damage


def _remove_dir(root: Path, champ: Path) -> None:
    shutil.rmtree(champ)


CHAMPION_CASES = [
    ("truncated-safetensors", _truncate("model.safetensors"),
     "is corrupt or incomplete", "models/champion", "dvc checkout models/champion.dvc"),
    ("truncated-config", _truncate("config.json"),
     "is corrupt or incomplete", "models/champion", "dvc checkout models/champion.dvc"),
    ("truncated-manifest", _truncate("manifest.json"),
     "manifest.json is not valid JSON", "models/champion/manifest.json", "dvc checkout"),
    ("truncated-pointer", _pointer('{"champion": {"path": "models/cha'),
     "champion pointer is not valid JSON", "models/champion.json", "git checkout"),
    ("pointer-wrong-shape", _pointer('{"champion": "models/champion"}'),
     "must be a mapping or null", "models/champion.json", "git checkout"),
    ("champion-not-checked-out", _remove_dir,
     "names a champion but models/champion is not in the workspace", "models/champion",
     "dvc pull"),
]


@pytest.mark.parametrize("name, damage, what, where, fix", CHAMPION_CASES,
                         ids=[c[0] for c in CHAMPION_CASES])
@pytest.mark.slow
def test_evaluate_refuses_a_bad_champion(name, damage, what, where, fix,
                                         trained_dir: Path) -> None:
    root = trained_dir
    before = snapshot(root, EVAL_OUT)
    _champion(root, damage)
    try:
        proc = run("evaluate", root)
        assert_clear_error(proc, "evaluate", what, where, fix)
        assert snapshot(root, EVAL_OUT) == before
    finally:
        shutil.rmtree(root / "models/champion", ignore_errors=True)
        (root / "models/champion.json").unlink(missing_ok=True)


class _Pwn:
    """Unpickling this would create a file: weights_only=True must refuse it."""

    def __reduce__(self):
        return (Path.touch, (Path("PWNED"),))


def _state_random(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _state_truncated(path: Path) -> None:
    import torch

    torch.save({"fingerprint": "x", "progress": {"step": 1}}, path)
    path.write_bytes(path.read_bytes()[:200])


def _state_pickle(path: Path) -> None:
    import torch

    torch.save({"fingerprint": "x", "payload": _Pwn()}, path)


@pytest.mark.parametrize("write_state", [_state_random, _state_truncated, _state_pickle],
                         ids=["random-bytes", "truncated", "foreign-pickle"])
def test_train_refuses_a_corrupt_resume_state(write_state, trained_dir: Path) -> None:
    root = trained_dir
    outs = ["models/checkpoint", "plots/train_steps.csv", "metrics/train.json"]
    before = snapshot(root, outs)
    state = root / "models/train_state/state.pt"
    state.parent.mkdir(parents=True, exist_ok=True)
    write_state(state)
    try:
        proc = run("train", root)
        assert_clear_error(proc, "train", "resumable training state is corrupt or not ours",
                           "models/train_state/state.pt", "delete models/train_state/")
        assert snapshot(root, outs) == before
        assert not (root / "PWNED").exists()  # the pickle's payload never ran
    finally:
        shutil.rmtree(state.parent)


# ============================================================================ validate

@pytest.fixture(scope="module")
def validate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw data that passes validation, validated once (metrics/data.json and reports exist)."""
    root = tmp_path_factory.mktemp("bad-validate")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    texts, labels = make_rows(20)
    _write_raw(root, texts, labels)
    proc = run("validate", root)
    assert proc.returncode == 0, proc.stderr
    return root


def _write_raw(root: Path, texts: list[dict], labels: list[dict]) -> None:
    for rows, rel in ((texts, "data/raw/texts.parquet"), (labels, "data/labels/labels.parquet")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).astype("string").to_parquet(root / rel, index=False)


def _validate_a_copy(validate_dir: Path, name: str, texts: list[dict], labels: list[dict]
                     ) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """Run validate on a copy of the validated project holding these raw rows: (the copy, its
    metrics/data.json before, the finished process)."""
    root = validate_dir / name
    shutil.copytree(validate_dir, root, ignore=shutil.ignore_patterns("blank", "conflict"))
    _write_raw(root, texts, labels)
    before = snapshot(root, ["metrics/data.json"])
    return root, before, run("validate", root)


def test_validate_fails_on_texts_blank_after_normalisation(validate_dir: Path) -> None:
    """Zero-width spaces, direction marks and a BOM only: no content, a blocking failure."""
    texts, labels = make_rows(20)
    texts[3]["text"] = "\u200b\u200e\u200f\ufeff"
    texts[7]["text"] = "\u2060 \u200d ?!"
    root, before, proc = _validate_a_copy(validate_dir, "blank", texts, labels)
    assert_clear_error(proc, "validate", "1 blocking data check(s) failed: texts.text_not_blank",
                       "reports/validation/raw/summary.md", "validate.warn_only")
    assert "2 of 120 row(s) unexpected" in proc.stderr
    assert snapshot(root, ["metrics/data.json"]) == before  # split never sees the data


def test_validate_fails_on_conflicting_labels_hidden_by_unicode(validate_dir: Path) -> None:
    """The same message, once with a zero-width space and a non-breaking hyphen, labelled twice."""
    texts, labels = make_rows(20)
    texts[0]["text"] = "my e-mail is wrong"
    texts[1]["text"] = "My e\u2011mail\u200b is wrong!"
    labels[1]["label"] = "change_address" if labels[0]["label"] != "change_address" else "x"
    root, before, proc = _validate_a_copy(validate_dir, "conflict", texts, labels)
    assert_clear_error(proc, "validate", "data.conflicting_labels",
                       "reports/validation/raw/summary.md", "fix the data at its source")
    assert snapshot(root, ["metrics/data.json"]) == before


@pytest.mark.parametrize("pointer, what, where, fix", [
    ("{not json", "champion pointer is not valid JSON", "models/champion.json", "git checkout"),
    ('["models/champion"]', "champion pointer must be", "models/champion.json", "git checkout"),
], ids=["pointer-not-json", "pointer-a-list"])
def test_validate_refuses_a_bad_champion_pointer(pointer, what, where, fix,
                                                 validate_dir: Path) -> None:
    outs = ["metrics/data.json", "reports/validation/raw"]
    before = snapshot(validate_dir, outs)
    (validate_dir / "models").mkdir(exist_ok=True)
    (validate_dir / "models/champion.json").write_text(pointer)
    try:
        proc = run("validate", validate_dir)
        assert_clear_error(proc, "validate", what, where, fix)
        assert snapshot(validate_dir, outs) == before
    finally:
        (validate_dir / "models/champion.json").unlink()


def test_validate_refuses_a_truncated_champion_label_map(validate_dir: Path) -> None:
    outs = ["metrics/data.json", "reports/validation/raw"]
    before = snapshot(validate_dir, outs)
    champ = validate_dir / "models/champion"
    champ.mkdir(parents=True)
    (champ / "labels.json").write_text('["refund_request", "cancel_')
    (validate_dir / "models/champion.json").write_text(
        json.dumps({"champion": {"path": "models/champion"}}))
    try:
        proc = run("validate", validate_dir)
        assert_clear_error(proc, "validate", "labels.json is not valid JSON",
                           "models/champion/labels.json, line 1", "dvc checkout")
        assert snapshot(validate_dir, outs) == before
    finally:
        shutil.rmtree(champ)
        (validate_dir / "models/champion.json").unlink()


def test_split_validation_catches_unicode_near_duplicates(tmp_path: Path) -> None:
    """Zero-width space, non-breaking hyphen, trailing punctuation: the same text in two splits."""
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    texts, labels = make_rows(12)
    df = pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")[["id", "text", "label"]]
    parts = {"train": df.iloc[::2].copy(), "val": df.iloc[1::4].copy(),
             "test": df.iloc[3::4].copy()}
    twins = [("please re\u200bfund order 7", "please refund order 7"),
             ("non\u2011stop delivery 8", "non-stop delivery 8"),
             ("where is my parcel 9", "Where is my parcel 9?!")]
    for k, (a, b) in enumerate(twins):
        lab = parts["train"]["label"].iloc[0]
        parts["train"].loc[len(df) + 2 * k] = [f"n{k}a", a, lab]
        parts["test"].loc[len(df) + 2 * k + 1] = [f"n{k}b", b, lab]
    (tmp_path / "data/splits").mkdir(parents=True)
    for name, part in parts.items():
        part.astype("string").reset_index(drop=True).to_parquet(
            tmp_path / f"data/splits/{name}.parquet")
    proc = run("validate", tmp_path, "--splits")
    assert_clear_error(proc, "validate", "failed: splits.normalised_leakage",
                       "reports/validation/splits/summary.md", "validate.warn_only")
    assert "6 of" in proc.stderr.split("splits.normalised_leakage:", 1)[1].split("\n")[0]
    assert "splits.exact_leakage" not in proc.stderr.split("ERROR", 1)[1]


# ============================================================================ split (golden set)

@pytest.mark.parametrize("content, what, fix", [
    ("id,text,label\ng1,hello there,Refund\ng2,hi there,refund\n",
     "differ only by case or spaces", "one spelling per class"),
    ("id,text,label\ng1,hello there,refund\n g1,hi there,refund\n",
     "differ only by surrounding whitespace", "trim the ids"),
    ("id;text;label\ng1;hello;refund\n", "looks semicolon-delimited", "comma-separated"),
], ids=["golden-label-case", "golden-id-whitespace", "golden-semicolon"])
def test_split_refuses_a_bad_golden_test_set(content, what, fix, tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    texts, labels = make_rows(12)
    _write_raw(tmp_path, texts, labels)
    (tmp_path / "data/test_set").mkdir(parents=True)
    (tmp_path / "data/test_set/golden.csv").write_text(content)
    set_params(tmp_path, {"split": {"test_set": "data/test_set/golden.csv"}})
    proc = run("split", tmp_path)
    assert_clear_error(proc, "split", what, "data/test_set/golden.csv", fix)
    assert not (tmp_path / "data/splits").exists()


# ============================================================================ predict

@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    from tests.test_export import build_project

    root = build_project(tmp_path_factory.mktemp("bad-predict"), tiny_st_model_dir,
                         quantize=False)
    return root / "models/onnx/model.onnx"


PREDICT_CASES = [
    ("semicolon", "in.csv", "id;text\n1;hello\n", "looks semicolon-delimited", "in.csv, line 1",
     "comma-separated"),
    ("text-number-jsonl", "in.jsonl", '{"id": "a", "text": "hi"}\n{"id": "b", "text": 5}\n',
     "column 'text' at line 2 is a number", "in.jsonl, line 2", "quote numbers"),
    ("broken-jsonl", "in.jsonl", '{"id": "a", "text": "hi"}\n{"id": "b", "text": "x\n',
     "line 2 is not valid JSON", "in.jsonl, line 2", "fix or remove that line"),
    ("nul-in-later-chunk", "in.csv", "id,text\n" + "".join(f"{i},text {i}\n" for i in range(7))
     + "7,bad\x00text\n", "at line 9 contains a NUL character", "in.csv, line 9",
     "remove NUL characters"),
    ("bad-row-in-later-chunk", "in.jsonl",
     "".join(json.dumps({"id": str(i), "text": f"t {i}"}) + "\n" for i in range(7))
     + '{"id": "7", "text": ["a"]}\n', "column 'text' at line 8 is an array", "in.jsonl, line 8",
     "plain string"),
    ("parquet-as-csv", "in.csv", _parquet(pa.table({"text": ["hi"]})), "is Parquet", "in.csv",
     "rename it to .parquet"),
]


@pytest.mark.parametrize("name, file, content, what, where, fix", PREDICT_CASES,
                         ids=[c[0] for c in PREDICT_CASES])
def test_predict_refuses_and_keeps_the_old_output(name, file, content, what, where, fix,
                                                  onnx_model: Path, tmp_path: Path) -> None:
    src = tmp_path / file
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "out.csv").write_text("id,label\nold,run\n")  # an earlier run's output
    before = snapshot(tmp_path, ["out.csv"])
    proc = run("predict", tmp_path, "--model", str(onnx_model), "--input", file,
               "--output", "out.csv", "--chunk-rows", "2")
    assert_clear_error(proc, "predict", what, where, fix)
    assert snapshot(tmp_path, ["out.csv"]) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_predict_streams_chunks_into_the_same_output(onnx_model: Path, tmp_path: Path) -> None:
    """Not an error case: chunked scoring (3 rows a chunk) writes what one chunk writes."""
    rows = [{"id": f"r{i}", "text": f"where is my package {i}" * (1 + i % 3)} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=4)
    outs = {}
    for chunk in ("3", "100"):
        proc = run("predict", tmp_path, "--model", str(onnx_model), "--input", "in.parquet",
                   "--output", f"out{chunk}.csv", "--chunk-rows", chunk, "--batch-size", "1")
        assert proc.returncode == 0, proc.stderr
        outs[chunk] = (tmp_path / f"out{chunk}.csv").read_bytes()
        assert "scored 10 rows" in proc.stdout
    assert outs["3"] == outs["100"]
    assert pd.read_csv(tmp_path / "out3.csv")["id"].tolist() == [r["id"] for r in rows]


# ============================================================================ leftovers of a kill

def _stale(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"half-written")
    os.utime(path, (1_000_000_000, 1_000_000_000))  # long before this run started
    return path


def test_export_removes_only_its_own_stale_temp_dirs(onnx_model: Path) -> None:
    """A SIGKILLed export leaves models/onnx/.export.XXXXXXXX behind; the next run removes it."""
    root = onnx_model.parents[2]
    onnx_dir = onnx_model.parent
    stale = _stale(onnx_dir / ".export.k1ll3d_x")
    foreign = [_stale(onnx_dir / ".quantize.k1ll3d_x"), _stale(onnx_dir / ".export.not-mkdtemp"),
               _stale(onnx_dir / "export.k1ll3d_y")]
    proc = run("export", root)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert f"removed 1 stale temp dir(s) left by an interrupted run: {stale.relative_to(root)}" \
        in proc.stderr
    assert all(p.is_dir() for p in foreign)  # not export's: left alone
    for p in foreign:
        shutil.rmtree(p)


def test_atomic_writes_remove_stale_temp_dirs_of_the_same_output(tmp_path: Path) -> None:
    from stages.io import write_json

    stale = _stale(tmp_path / ".eval.json.ab12cd34.tmp")
    other = _stale(tmp_path / ".gate.json.ab12cd34.tmp")
    fresh = tmp_path / ".eval.json.zz99yy88.tmp"
    fresh.mkdir()  # made after this process started: another writer's, never touched
    write_json(tmp_path / "eval.json", {"ok": True})
    assert json.loads((tmp_path / "eval.json").read_text()) == {"ok": True}
    assert not stale.exists() and other.is_dir() and fresh.is_dir()
