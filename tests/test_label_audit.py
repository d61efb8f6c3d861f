"""label_audit: planted label flips are found, each mode does what it says, the reports stay inert
and offline, bad params and bad splits are clear errors, and `dvc repro` skips what did not change.

The toy data: three classes with disjoint vocabularies (texts drawn from each class's words) and
one planted flip per ordered pair of classes, so a flip is always a text of one class labelled as
another. The tiny random BERT's embeddings do not separate even these classes (measured: 2-5 of 6
flips found with 13-62 clean rows flagged), so the tests that need the audit to be right use
``features: tfidf``, which finds 5-6 of 6 and flags no clean row on every seed tried; the
embeddings path still runs end to end where the result does not matter (block below the limit).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from pathlib import Path

import pandas as pd
import pytest

from stages import artifacts
from stages.common import StageError
from stages.label_audit import LabelAuditParams, audit_rows, write_exclusions
from tests.conftest import dvc, run_stage, set_params
from tests.helpers import assert_clear_error, assert_failed_with

MODULE = "stages.label_audit"
OUTPUTS = (artifacts.LABEL_AUDIT_METRICS, artifacts.LABEL_AUDIT_MD, artifacts.LABEL_AUDIT_HTML,
           artifacts.LABEL_AUDIT_SUSPECTS, artifacts.LABEL_AUDIT_EXCLUDED)

# words the tiny BERT's vocabulary has (tests/tiny_model.py), so train tokenizes them as words
TOY_VOCAB = {
    "billing": "refund money back return charged twice paid charge card bank".split(),
    "login": "login password reset locked email code sign access account app".split(),
    "shipping": "delivery package parcel shipping shipped arrived late tracking deliver delivered".split(),
}
TOY_TEMPLATES = ["{} {} {} {} {}", "my {} {} please {} {} {}", "{} and {} {} {} {}"]
PER_CLASS = 40            # train + val rows a class; a quarter of them go to val
FLIP_AT = {12: 1, 29: 2}  # row k of each class is labelled as the class 1 or 2 places further on
NASTY = "<script>alert(1)</script> [x](http://evil) @someone | pipe\nsecond line"


def toy_text(rng: random.Random, label: str, k: int) -> str:
    return TOY_TEMPLATES[k % len(TOY_TEMPLATES)].format(*rng.sample(TOY_VOCAB[label], 5))


@functools.cache
def toy_data() -> tuple[dict[str, pd.DataFrame], frozenset[str]]:
    """({train, val, test}: frames of id, text, label, source; the ids of the planted flips).
    Six flips in 120 train + val rows (three in each split); the test split is clean. Seed 1:
    on seed 0 the audit finds 4 of 6 (cleanlab's calibrated noise counts round two of the
    one-row pairs away); seeds 1-7 find 6 of 6 whatever the fold seed or filter_by."""
    rng = random.Random(1)
    labels = sorted(TOY_VOCAB)
    rows, planted = [], set()
    for c, label in enumerate(labels):
        for k in range(PER_CLASS):
            row_id = f"r{len(rows):04d}"
            given = labels[(c + FLIP_AT[k]) % len(labels)] if k in FLIP_AT else label
            if given != label:
                planted.add(row_id)
            rows.append({"id": row_id, "text": toy_text(rng, label, k), "label": given,
                         "source": "email"})
    df = pd.DataFrame(rows)
    test = pd.DataFrame([{"id": f"s{c}{k:02d}", "text": toy_text(rng, label, k), "label": label,
                          "source": "email"} for c, label in enumerate(labels) for k in range(8)])
    in_val = df.index % 4 == 0
    return ({"train": df[~in_val].reset_index(drop=True), "val": df[in_val].reset_index(drop=True),
             "test": test}, frozenset(planted))


def written_for(row_id: str) -> str:
    """The class a toy train or val row's text was drawn from (its label, unless planted)."""
    return sorted(TOY_VOCAB)[int(row_id[1:]) // PER_CLASS]


def write_splits(root: Path, frames: dict[str, pd.DataFrame]) -> None:
    for name, frame in frames.items():
        frame.to_parquet(root / f"data/splits/{name}.parquet")


@pytest.fixture
def audit_dir(split_dir: Path) -> Path:
    """split_dir (params pointing train and the audit at the tiny model) with the toy splits in
    place of the tiny ones, audited on TF-IDF features (see the module docstring for why)."""
    write_splits(split_dir, toy_data()[0])
    set_params(split_dir, {"label_audit": {"features": "tfidf"}})
    return split_dir


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def suspect_ids(root: Path) -> set[str]:
    return set(pd.read_parquet(root / artifacts.LABEL_AUDIT_SUSPECTS)["id"])


def written(root: Path) -> list[str]:
    return [str(p) for p in OUTPUTS if (root / p).exists()]


# ------------------------------------------------------------------ planted flips are found


def test_planted_flips_are_found_in_process() -> None:
    frames, planted = toy_data()
    rows = pd.concat([frames[s].assign(split=s) for s in ("train", "val")], ignore_index=True)
    for seed in (0, 1, 2):  # the fold assignment changes with the seed; the finding should not
        audited = audit_rows(rows, LabelAuditParams(features="tfidf", seed=seed))
        found = set(audited.loc[audited["suspect"], "id"])
        assert len(found & planted) >= 5, (seed, sorted(found), sorted(planted))
        assert len(found - planted) <= 2, (seed, sorted(found - planted))
        flips = audited[audited["id"].isin(found & planted)]
        # the suggestion is the class the text was written for, not the planted label
        assert (flips["suggested"] == flips["id"].map(written_for)).all()
        assert audited.loc[audited["id"].isin(planted), "label_quality"].max() < \
            audited.loc[~audited["id"].isin(planted), "label_quality"].median()


def test_the_stage_finds_the_planted_flips_and_writes_every_output(audit_dir: Path) -> None:
    proc = run_stage("label_audit", audit_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, planted = toy_data()
    found = suspect_ids(audit_dir)
    assert len(found & planted) >= 5 and len(found - planted) <= 2, (sorted(found), sorted(planted))
    metrics = read_json(audit_dir / artifacts.LABEL_AUDIT_METRICS)
    assert metrics["rows"] == 120 and metrics["suspects"] == len(found)
    assert metrics["per_split"]["train"]["rows"] == 90 and metrics["per_split"]["val"]["rows"] == 30
    assert sum(s["suspects"] for s in metrics["per_split"].values()) == len(found)
    assert set(metrics["per_class"]) == set(TOY_VOCAB)
    assert metrics["model"]["features"] == "tfidf" and metrics["model"]["out_of_fold_accuracy"] > 0.9
    suspects = pd.read_parquet(audit_dir / artifacts.LABEL_AUDIT_SUSPECTS)
    assert list(suspects["label_quality"]) == sorted(suspects["label_quality"])  # worst first
    assert (suspects["label"] != suspects["suggested"]).all()
    assert read_json(audit_dir / artifacts.LABEL_AUDIT_EXCLUDED) == {"excluded_ids": []}  # mode report
    assert "look wrong" in (audit_dir / artifacts.LABEL_AUDIT_MD).read_text()


# ------------------------------------------------------------------ modes


def test_report_mode_above_the_limit_warns_and_excludes_nothing(audit_dir: Path) -> None:
    set_params(audit_dir, {"label_audit": {"mode": "report", "max_suspect_share": 0.01}})
    proc = run_stage("label_audit", audit_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    share = read_json(audit_dir / artifacts.LABEL_AUDIT_METRICS)["suspect_share"]
    assert share > 0.01
    warning = next(line for line in proc.stderr.splitlines() if "above label_audit.max_suspect_share" in line)
    assert f"{100 * share:.1f}%" in warning and str(artifacts.LABEL_AUDIT_HTML) in warning
    assert read_json(audit_dir / artifacts.LABEL_AUDIT_EXCLUDED) == {"excluded_ids": []}


def test_report_mode_below_the_limit_does_not_warn(audit_dir: Path) -> None:
    set_params(audit_dir, {"label_audit": {"max_suspect_share": 0.5}})
    proc = run_stage("label_audit", audit_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "above label_audit.max_suspect_share" not in proc.stderr
    assert suspect_ids(audit_dir), "the toy data has suspects: the limit, not their absence, is tested"


def test_block_mode_above_the_limit_fails_but_leaves_the_reports(audit_dir: Path) -> None:
    set_params(audit_dir, {"label_audit": {"mode": "block", "max_suspect_share": 0.01}})
    proc = run_stage("label_audit", audit_dir)
    metrics = read_json(audit_dir / artifacts.LABEL_AUDIT_METRICS)
    assert_clear_error(proc, MODULE, what=f"{metrics['suspects']} of 120 train and val labels",
                       where=str(artifacts.LABEL_AUDIT_HTML), fix="correct their labels")
    assert_failed_with(proc, MODULE, "look wrong", "above label_audit.max_suspect_share (1%)",
                       "label_audit.mode: exclude")
    # the reviewer gets what to review; train gets nothing it could mistake for a verdict
    for report in (artifacts.LABEL_AUDIT_MD, artifacts.LABEL_AUDIT_HTML, artifacts.LABEL_AUDIT_SUSPECTS):
        assert (audit_dir / report).is_file(), report
    assert len(suspect_ids(audit_dir)) == metrics["suspects"]
    assert not (audit_dir / artifacts.LABEL_AUDIT_EXCLUDED).exists()


def test_block_mode_below_the_limit_passes_on_the_encoder_embeddings(audit_dir: Path) -> None:
    # the default features: the frozen tiny BERT embeds every row (its verdict is noise: any
    # share is below a limit of 1)
    set_params(audit_dir, {"label_audit": {"mode": "block", "max_suspect_share": 1.0,
                                           "features": "embeddings"}})
    proc = run_stage("label_audit", audit_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_json(audit_dir / artifacts.LABEL_AUDIT_METRICS)
    assert metrics["model"]["features"] == "embeddings" and metrics["rows"] == 120
    assert read_json(audit_dir / artifacts.LABEL_AUDIT_EXCLUDED) == {"excluded_ids": []}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_exclude_mode_lists_the_suspects_and_train_leaves_them_out(audit_dir: Path) -> None:
    set_params(audit_dir, {"label_audit": {"mode": "exclude"}})
    test_split = audit_dir / "data/splits/test.parquet"
    test_before = sha256(test_split)
    proc = run_stage("label_audit", audit_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    suspects = pd.read_parquet(audit_dir / artifacts.LABEL_AUDIT_SUSPECTS)
    excluded = read_json(audit_dir / artifacts.LABEL_AUDIT_EXCLUDED)["excluded_ids"]
    assert excluded == sorted(suspects["id"]) and excluded
    assert read_json(audit_dir / artifacts.LABEL_AUDIT_METRICS)["excluded"] == len(excluded)

    proc = run_stage("train", audit_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_json(audit_dir / artifacts.CHECKPOINT_DIR / artifacts.TRAINING_DATA_FILE)
    frames, _ = toy_data()
    per_split = suspects["split"].value_counts().to_dict()
    assert record["excluded_by_label_audit"] == {s: per_split.get(s, 0) for s in ("train", "val")}
    assert record["rows"] == {s: len(frames[s]) - per_split.get(s, 0) for s in ("train", "val")}
    assert sha256(test_split) == test_before


def test_exclude_mode_refuses_to_leave_a_class_without_train_rows(audit_dir: Path) -> None:
    # a fourth class: one train row with a login text (a flip) and one val row of its own words.
    # cleanlab leaves at least one row of a class unflagged (min_examples_per_class), so a class
    # is lost to train only when the row it keeps is in val, as here
    frames, _ = toy_data()
    flip = {"id": "x0", "text": toy_text(random.Random(7), "login", 0), "label": "warranty",
            "source": "email"}
    own = {"id": "x1", "text": "broken damaged defective faulty screen", "label": "warranty",
           "source": "email"}
    write_splits(audit_dir, {"train": pd.concat([frames["train"], pd.DataFrame([flip])], ignore_index=True),
                             "val": pd.concat([frames["val"], pd.DataFrame([own])], ignore_index=True)})
    set_params(audit_dir, {"label_audit": {"mode": "exclude"}})
    proc = run_stage("label_audit", audit_dir)
    assert "x0" in suspect_ids(audit_dir), "the crafted train row should be a suspect"
    assert_clear_error(proc, MODULE, what="would leave no train rows of class(es) ['warranty']",
                       where="label_audit.mode: exclude", fix="label_audit.mode: report")
    assert not (audit_dir / artifacts.LABEL_AUDIT_EXCLUDED).exists()


def test_write_exclusions_keeps_a_class_with_one_train_row_left(workdir: Path) -> None:
    audited = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": ["x", "x", "y", "y"],
                            "split": ["train", "train", "train", "val"]})
    with pytest.raises(StageError, match=r"no train rows of class\(es\) \['y'\]"):
        write_exclusions(["c"], audited)  # y's only train row; its val row does not count
    assert not (workdir / artifacts.LABEL_AUDIT_EXCLUDED).exists()
    write_exclusions(["a", "d"], audited)
    assert read_json(workdir / artifacts.LABEL_AUDIT_EXCLUDED) == {"excluded_ids": ["a", "d"]}


# ------------------------------------------------------------------ params


@pytest.mark.parametrize(("key", "value", "what", "fix"), [
    ("mode", "delete", "value 'delete' not allowed", "['report', 'block', 'exclude']"),
    ("features", "bert", "value 'bert' not allowed", "['embeddings', 'tfidf', 'both']"),
    ("folds", 1, "label_audit.folds = 1 is out of range: it must be >= 2", "set a value"),
    ("max_suspect_share", 1.5, "label_audit.max_suspect_share = 1.5 is out of range", "set a value"),
])
def test_a_bad_param_is_a_clear_error_naming_the_key(audit_dir: Path, key: str, value: object,
                                                     what: str, fix: str) -> None:
    set_params(audit_dir, {"label_audit": {key: value}})
    proc = run_stage("label_audit", audit_dir)
    assert_clear_error(proc, MODULE, what=what, where=f"params.yaml:label_audit.{key}", fix=fix)
    assert written(audit_dir) == []


# ------------------------------------------------------------------ reports


def nasty_dir(audit_dir: Path, show_texts: bool) -> set[str]:
    """End every train and val text with NASTY (in every row it tells no class from another, so
    the flips are still found and listed); run the stage; the flips found."""
    frames, planted = toy_data()
    write_splits(audit_dir, {name: frames[name].assign(text=frames[name]["text"] + " " + NASTY)
                             for name in ("train", "val")})
    set_params(audit_dir, {"report": {"show_texts": show_texts}})
    proc = run_stage("label_audit", audit_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = suspect_ids(audit_dir) & planted
    assert len(found) >= 5, "the nasty texts must be in the suspects table for this test to mean anything"
    return found


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def assert_tables_intact(md: str) -> None:
    """Every table row has its header's column count: no pipe or newline from data split a row."""
    lines = md.splitlines() + [""]
    tables = 0
    for before, line, after in zip([""] + lines, lines, lines[1:], strict=False):
        if not line.startswith("|"):
            continue
        if not before.startswith("|"):  # a header
            width, tables = unescaped_pipes(line), tables + 1
        assert unescaped_pipes(line) == width, (line, width)
        assert after.startswith("|") or after == "", f"a table row broke onto a new line: {after!r}"
    assert tables >= 2  # the classes and the suspects at least


def assert_html_inert_and_offline(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"\b(href|src)\s*=", page, re.I), "a link or an external resource"
    assert not re.search(r"url\(|@import", page, re.I)
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'' in page


def test_reports_quote_texts_escaped_when_show_texts_is_true(audit_dir: Path) -> None:
    nasty_dir(audit_dir, show_texts=True)
    page = (audit_dir / artifacts.LABEL_AUDIT_HTML).read_text()
    assert_html_inert_and_offline(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # quoted, as text
    md = (audit_dir / artifacts.LABEL_AUDIT_MD).read_text()
    assert not re.search(r"(?<!\\)<", md), "an unescaped < opens an HTML tag"
    assert "](http" not in md and "http://" not in md  # no link, no bare URL GitHub would link
    assert "@someone" not in md  # a mention would notify someone where the report is posted
    assert "\\<script\\>alert\\(1\\)" in md and "\\| pipe" in md
    assert_tables_intact(md)


def test_reports_show_only_hashes_when_show_texts_is_false(audit_dir: Path) -> None:
    nasty_dir(audit_dir, show_texts=False)
    suspects = pd.read_parquet(audit_dir / artifacts.LABEL_AUDIT_SUSPECTS)
    frames, _ = toy_data()
    texts = pd.concat([frames["train"], frames["val"]])["text"]
    for path in (artifacts.LABEL_AUDIT_HTML, artifacts.LABEL_AUDIT_MD):
        report = (audit_dir / path).read_text()
        for fragment in ("alert", "evil", "someone", "pipe", "second line"):
            assert fragment not in report, (path, fragment)
        for text in texts:  # no clean part of any text either
            assert text not in report, (path, text)
        for text_hash in suspects["text_hash"]:
            assert text_hash in report, (path, text_hash)
    assert_html_inert_and_offline((audit_dir / artifacts.LABEL_AUDIT_HTML).read_text())
    assert_tables_intact((audit_dir / artifacts.LABEL_AUDIT_MD).read_text())


# ------------------------------------------------------------------ bad splits


def test_a_missing_split_points_at_the_split_stage(audit_dir: Path) -> None:
    (audit_dir / "data/splits/val.parquet").unlink()
    proc = run_stage("label_audit", audit_dir)
    assert_clear_error(proc, MODULE, what="split 'val' file not found",
                       where="data/splits/val.parquet", fix="dvc repro split")
    assert written(audit_dir) == []


def test_a_single_class_cannot_be_audited(audit_dir: Path) -> None:
    frames, _ = toy_data()
    write_splits(audit_dir, {name: frames[name].assign(label="billing") for name in ("train", "val")})
    proc = run_stage("label_audit", audit_dir)
    assert_clear_error(proc, MODULE, what="the audit needs at least 2 classes",
                       where="data/splits/train.parquet", fix="add rows of another class")
    assert written(audit_dir) == []


def test_empty_splits_are_a_clear_error(audit_dir: Path) -> None:
    frames, _ = toy_data()
    write_splits(audit_dir, {name: frames[name].iloc[:0] for name in ("train", "val")})
    proc = run_stage("label_audit", audit_dir)
    assert_clear_error(proc, MODULE, what="the train and val splits have no rows to audit",
                       where="data/splits/train.parquet", fix="dvc repro split")
    assert written(audit_dir) == []


# ------------------------------------------------------------------ dvc repro


@pytest.mark.slow
def test_dvc_repro_skips_an_unchanged_audit_and_a_report_only_change_does_not_retrain(
        pipeline_repo: Path) -> None:
    repo = pipeline_repo
    first = dvc(repo, "repro", "train")
    for stage in ("split", "label_audit", "train"):
        assert f"Running stage '{stage}'" in first.stdout, stage
    assert (repo / artifacts.LABEL_AUDIT_HTML).is_file()

    again = dvc(repo, "repro", "label_audit")
    assert "Running stage" not in again.stdout, again.stdout
    assert "up to date" in dvc(repo, "status", "label_audit").stdout

    # a new audit in report mode writes the same (empty) exclusions: train has nothing to redo
    set_params(repo, {"label_audit": {"folds": 3}})
    assert "label_audit" in dvc(repo, "status", "label_audit").stdout
    rerun = dvc(repo, "repro", "train")
    assert "Running stage 'label_audit'" in rerun.stdout
    assert "Running stage 'train'" not in rerun.stdout, rerun.stdout
    assert read_json(repo / artifacts.LABEL_AUDIT_METRICS)["model"]["folds"] == 3
    assert "up to date" in dvc(repo, "status", "train").stdout
