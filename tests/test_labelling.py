"""The labelling round trip without a server: selection from the prediction log, the queue, the
import rules (each refusal leaves the dataset untouched), and ingest reading the import batches.
Label Studio itself: tests/test_label_studio.py.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labelling.imports import annotations_from_csv, import_annotations
from labelling.queue import queued, text_id
from labelling.select import choose, k_center, queue_batch, select_batch, uncertainty
from monitor.log import write_log_file
from stages.common import StageError
from stages.dataset import IngestParams, Source, build_dataset
from stages.prediction_log import text_sha256
from tests.conftest import REPO_ROOT, make_rows, set_params, write_csv
from tests.helpers import assert_clear_error, run_module

END = datetime(2026, 12, 1, 12, tzinfo=UTC)


# ------------------------------------------------------------------------- strategies


def test_uncertainty_ranks_the_closest_call_first() -> None:
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]])
    assert list(np.argsort(-uncertainty(probs))) == [1, 2, 0]
    assert list(np.argsort(-uncertainty(probs, "entropy"))) == [1, 2, 0]


def test_hybrid_spreads_a_batch_over_clusters_that_uncertainty_fills_with_one() -> None:
    rng = np.random.default_rng(0)
    # 40 near-copies of one new message, all very uncertain; 20 other messages spread out
    centre = rng.normal(size=16)
    copies = centre + 0.01 * rng.normal(size=(40, 16))
    others = rng.normal(size=(20, 16))
    emb = np.vstack([copies, others])
    probs = np.vstack([np.tile([0.5, 0.5], (40, 1)), np.tile([0.6, 0.4], (20, 1))])
    by_uncertainty = choose("uncertainty", 10, probs, emb)
    hybrid = choose("hybrid", 10, probs, emb)
    assert (by_uncertainty < 40).all()           # ten paraphrases of one message
    assert (hybrid < 40).sum() <= 2              # one or two of them, the rest spread out
    assert len(set(hybrid.tolist())) == 10


def test_novelty_prefers_what_is_far_from_the_labelled_data() -> None:
    labelled = np.array([[1.0, 0.0], [0.9, 0.1]])
    emb = np.array([[1.0, 0.01], [0.0, 1.0], [0.7, 0.7]])
    assert list(choose("novelty", 3, np.full((3, 2), 0.5), emb, labelled)) == [1, 2, 0]


def test_k_center_counts_the_labelled_data_as_chosen() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.71, 0.7]])
    # row 1 is the only one far from what is labelled: it comes first
    assert k_center(emb, 1, np.array([0.0, 1.0, 0.3])) == [1]


def test_choose_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="unknown selection strategy"):
        choose("loudest", 1, np.ones((2, 2)))
    with pytest.raises(ValueError, match="needs one embedding"):
        choose("hybrid", 1, np.ones((2, 2)))
    assert len(choose("random", 5, np.ones((3, 2)) / 2)) == 3


# ------------------------------------------------------------------------- a project


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project directory: the real params.yaml, 20 texts per class, no imports, no champion."""
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    texts, labels = make_rows(20, intents=None)
    write_csv(tmp_path / "texts.csv", texts)
    write_csv(tmp_path / "labels.csv", labels)
    (tmp_path / "data/imports").mkdir(parents=True)
    set_params(tmp_path, {"ingest": {"source": {"texts": "texts.csv", "labels": "labels.csv"},
                                     "imports": "data/imports", "new_class_min_rows": 3},
                          "labelling": {"batch_size": 4, "strategy": "uncertainty"}})
    return tmp_path


def dataset(repo: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    return build_dataset(IngestParams(Source(str(repo / "texts.csv"), str(repo / "labels.csv")),
                                      imports=str(repo / "data/imports"), new_class_min_rows=3))


def log_rows(repo: Path, texts: list[str | None], n_classes: int) -> None:
    """One logged prediction per text (None: logged without its text), 10 minutes apart."""
    rng = np.random.default_rng(1)
    rows = []
    for i, text in enumerate(texts):
        probs = rng.dirichlet(np.ones(n_classes)).astype(np.float32)
        rows.append({"ts": pd.Timestamp(END - timedelta(minutes=10 * (i + 1))),
                     "request_id": f"r{i}", "id": None, "text": text,
                     "text_sha256": text_sha256(text or f"hidden {i}"),
                     "label": f"class{int(probs.argmax())}", "confidence": float(probs.max()),
                     "probs": probs.tolist(), "model_version": "abc123", "latency_ms": 3.0,
                     "truncated": False, "n_tokens": 8, "embedding": rng.normal(size=4).tolist()})
    write_log_file(repo / "logs/predictions", pd.DataFrame(rows))


NEW = ["where is the nearest atm", "can i change my pin at the branch", "my card was swallowed",
       "how long does a transfer abroad take", "is there a fee for paying in euros"]


def queue_new_texts(repo: Path) -> pd.DataFrame:
    log_rows(repo, NEW, 3)
    set_params(repo, {"labelling": {"batch_size": 10}})
    summary = queue_batch(repo, END)
    assert summary["counts"]["selected"] == 5
    return queued(repo / "data/queue")


# ------------------------------------------------------------------------- selection


def test_selection_leaves_out_labelled_queued_repeated_blank_and_hash_only_texts(repo: Path) -> None:
    known = pd.read_csv(repo / "texts.csv")["text"].iloc[0]
    texts = [*NEW, f"  {known.upper()}!! ", NEW[0] + "?", "   ", None]
    log_rows(repo, texts, 3)
    first = queue_batch(repo, END)
    counts = first["counts"]
    assert counts == {"predictions": 9, "hash_only": 1, "blank": 1, "repeated": 1,
                      "already_labelled_or_queued": 1, "candidates": 5, "selected": 4}
    batch = pd.read_csv(first["path"])
    assert len(batch) == 4 and set(batch["text"]) <= set(NEW) | {NEW[0] + "?"}
    assert list(batch["id"]) == [text_id(t) for t in batch["text"]]
    assert batch["suggested_label"].str.startswith("class").all()
    # the next selection never queues those four again: only the fifth text is left
    second = queue_batch(repo, END)
    assert second["counts"]["selected"] == 1
    assert set(pd.read_csv(second["path"])["text"]).isdisjoint(batch["text"])
    third = queue_batch(repo, END)
    assert third["path"] is None and "nothing to label" in third["message"]


def test_a_hash_only_log_cannot_be_labelled(repo: Path) -> None:
    log_rows(repo, [None] * 5, 3)
    with pytest.raises(StageError, match="without their text") as err:
        select_batch(repo, END)
    assert "serve.log_text" in str(err.value.fix)


def test_an_empty_window_says_so(repo: Path) -> None:
    log_rows(repo, NEW, 3)
    with pytest.raises(StageError, match="no predictions in the window"):
        select_batch(repo, END - timedelta(days=3))


# ------------------------------------------------------------------------- imports


def csv_annotations(tmp: Path, rows: list[dict]) -> pd.DataFrame:
    return annotations_from_csv(str(write_csv(tmp / "in.csv", rows)), "ann")


def batch_files(repo: Path) -> list[Path]:
    return sorted((repo / "data/imports").glob("*.csv"))


def test_a_csv_import_adds_new_texts_and_twice_adds_nothing(repo: Path) -> None:
    q = queue_new_texts(repo)
    rows = [{"id": i, "label": "refund_request"} for i in q["id"][:3]]
    report = import_annotations(repo, csv_annotations(repo, rows), "csv")
    assert (report["imported"], report["new_texts"], report["corrections"]) == (3, 3, 0)
    (path,) = batch_files(repo)
    batch = pd.read_csv(path)
    assert list(batch["text"]) == list(q["text"][:3])
    assert set(batch["suggested_label"]) <= {"class0", "class1", "class2"}
    assert (batch["annotator"] == "ann").all() and (batch["origin"] == "csv").all()
    texts, labels, _ = dataset(repo)
    assert set(q["id"][:3]) <= set(texts["id"]) and set(q["id"][:3]) <= set(labels["id"])
    again = import_annotations(repo, csv_annotations(repo, rows), "csv")
    assert again["imported"] == 0 and again["unchanged"] == 3 and again["batch"] is None
    assert batch_files(repo) == [path]


def test_a_correction_changes_the_label_only(repo: Path) -> None:
    texts_before, labels_before, _ = dataset(repo)
    target = labels_before[labels_before["label"] == "refund_request"]["id"].iloc[0]
    report = import_annotations(
        repo, csv_annotations(repo, [{"id": target, "label": "cancel_subscription"}]), "csv")
    assert report["corrections"] == 1 and report["new_texts"] == 0
    texts, labels, _ = dataset(repo)
    pd.testing.assert_frame_equal(texts, texts_before)
    assert labels.set_index("id").loc[target, "label"] == "cancel_subscription"
    assert len(labels) == len(labels_before)


def test_disagreements_are_listed_not_imported_and_skips_ignored(repo: Path) -> None:
    q = queue_new_texts(repo)
    ann = pd.DataFrame({
        "id": [q["id"][0], q["id"][0], q["id"][1], q["id"][1], q["id"][2]],
        "text": [q["text"][0], q["text"][0], q["text"][1], q["text"][1], q["text"][2]],
        "label": ["refund_request", "cancel_subscription", "refund_request", "refund_request",
                  None],
        "annotator": ["a", "b", "a", "b", "a"], "annotated_at": None,
        "skipped": [False, False, False, False, True]})
    report = import_annotations(repo, ann, "label-studio")
    assert report["skipped"] == 1 and report["imported"] == 1
    (disputed,) = report["disagreements"]
    assert disputed["id"] == q["id"][0]
    assert disputed["labels"] == {"a": "refund_request", "b": "cancel_subscription"}
    batch = pd.read_csv(batch_files(repo)[0])
    assert list(batch["id"]) == [q["id"][1]] and batch["annotator"][0] == "a;b"


def nothing_written(repo: Path, before: list[Path]) -> None:
    assert batch_files(repo) == before
    assert not list((repo / "data/imports").glob(".*"))  # no temp file left behind


@pytest.mark.parametrize(("case", "message"), [
    ("unknown id", "neither queued for labelling nor in the dataset"),
    ("unknown label", "unknown label(s): 'open_account'"),
    ("changed text", "carry another text"),
])
def test_a_refused_import_writes_nothing(repo: Path, case: str, message: str) -> None:
    q = queue_new_texts(repo)
    good = {"id": q["id"][0], "text": q["text"][0], "label": "refund_request", "annotator": "a",
            "annotated_at": None, "skipped": False}
    bad = dict(good, id=q["id"][1], text=q["text"][1])
    bad |= {"unknown id": {"id": "no-such-id"}, "unknown label": {"label": "open_account"},
            "changed text": {"text": "a different message"}}[case]
    with pytest.raises(StageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_annotations(repo, pd.DataFrame([good, bad]), "label-studio")
    nothing_written(repo, [])


def test_a_new_class_is_accepted_on_purpose_and_trains_once_it_has_enough_rows(repo: Path) -> None:
    q = queue_new_texts(repo)
    rows = [{"id": i, "label": "atm_support"} for i in q["id"][:2]]
    with pytest.raises(StageError, match="--accept-new-class 'atm_support'"):
        import_annotations(repo, csv_annotations(repo, rows), "csv")
    report = import_annotations(repo, csv_annotations(repo, rows), "csv", {"atm_support"})
    assert report["new_classes"] == {"atm_support": 2}
    _, labels, held = dataset(repo)
    assert held == {"atm_support": 2} and "atm_support" not in set(labels["label"])
    third = [{"id": q["id"][2], "label": "atm_support"}]
    import_annotations(repo, csv_annotations(repo, third), "csv")  # now a known class
    _, labels, held = dataset(repo)
    assert held == {} and (labels["label"] == "atm_support").sum() == 3


def test_the_out_of_scope_label_is_always_accepted(repo: Path) -> None:
    q = queue_new_texts(repo)
    report = import_annotations(repo, csv_annotations(repo, [{"id": q["id"][0],
                                                              "label": "out_of_scope"}]), "csv")
    assert report["imported"] == 1 and report["new_classes"] == {}


# ------------------------------------------------------------------------- the commands and ingest


def test_the_import_command_refuses_clearly_and_ingest_reads_the_batches(repo: Path) -> None:
    q = queue_new_texts(repo)
    write_csv(repo / "bad.csv", [{"id": q["id"][0], "label": "open_account"}])
    proc = run_module("labelling.imports", repo, "--csv", "bad.csv")
    assert_clear_error(proc, "labelling.imports", "unknown label(s): 'open_account'", "bad.csv",
                       "--accept-new-class 'open_account'")
    nothing_written(repo, [])
    write_csv(repo / "good.csv", [{"id": q["id"][0], "label": "refund_request",
                                   "annotator": "sam"}])
    proc = run_module("labelling.imports", repo, "--csv", "good.csv")
    assert proc.returncode == 0, proc.stderr
    assert "imported 1 label(s)" in proc.stdout
    assert run_module("stages.ingest", repo).returncode == 0
    labels = pd.read_parquet(repo / "data/labels/labels.parquet").set_index("id")
    texts = pd.read_parquet(repo / "data/raw/texts.parquet").set_index("id")
    assert labels.loc[q["id"][0], "label"] == "refund_request"
    assert labels.loc[q["id"][0], "annotator"] == "sam"
    assert texts.loc[q["id"][0], "text"] == q["text"][0]


def test_ingest_refuses_a_damaged_batch_naming_the_file(repo: Path) -> None:
    write_csv(repo / "data/imports/20261201T000000Z-ab12-csv.csv", [{"id": "x", "label": "y"}])
    proc = run_module("stages.ingest", repo)
    assert_clear_error(proc, "stages.ingest", "column(s)", "20261201T000000Z-ab12-csv.csv",
                       "restore this file from git")


def test_ingest_refuses_a_batch_that_changes_a_known_text(repo: Path) -> None:
    first = pd.read_csv(repo / "texts.csv").iloc[0]
    write_csv(repo / "data/imports/20261201T000000Z-ab12-csv.csv", [{
        "id": first["id"], "text": "something else entirely", "label": "refund_request",
        "annotator": "a", "labelled_at": "2026-12-01T00:00:00+00:00", "new_class": "false"}])
    proc = run_module("stages.ingest", repo)
    assert_clear_error(proc, "stages.ingest", "carry another text", "20261201T000000Z-ab12-csv.csv",
                       "an id names one text forever")


def test_in_a_git_checkout_the_import_is_a_commit_of_the_batch_alone(repo: Path) -> None:
    from tests.helpers import git

    q = queue_new_texts(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + "\n# a local edit\n")
    report = import_annotations(repo, csv_annotations(repo, [{"id": q["id"][0],
                                                              "label": "refund_request"}]), "csv")
    (path,) = batch_files(repo)
    assert report["commit"] == git(repo, "rev-parse", "HEAD")
    assert [line for line in git(repo, "show", "--name-only", "--format=%s", "HEAD").splitlines()
            if line] == [
        "labels: import 1 label(s) from csv: 1 new text(s), 0 correction(s)",
        path.relative_to(repo).as_posix()]
    assert git(repo, "status", "--short").replace(" M ", "M ").splitlines() == [
        "M params.yaml", "?? in.csv"]  # the local edit is neither committed nor lost


def test_notify_watch_sees_an_import(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m commands.notify --watch` polls this snapshot: an import changes it."""
    from commands.notify import snapshot

    monkeypatch.chdir(repo)
    q = queue_new_texts(repo)
    before = snapshot(Path("params.yaml"))
    assert set(before) == {"texts", "labels", "imports"}
    import_annotations(repo, csv_annotations(repo, [{"id": q["id"][0], "label": "refund_request"}]),
                       "csv")
    after = snapshot(Path("params.yaml"))
    assert after["imports"] != before["imports"]
    assert {k: after[k] for k in ("texts", "labels")} == {k: before[k] for k in ("texts", "labels")}


def test_label_audit_suspects_become_a_review_batch_and_corrections(repo: Path) -> None:
    from labelling.review import queue_review

    _, labels, _ = dataset(repo)
    first, second = labels.iloc[0], labels.iloc[1]
    other = next(lab for lab in sorted(set(labels["label"])) if lab != first["label"])
    (repo / "data/label_audit").mkdir(parents=True)
    pd.DataFrame({"id": [second["id"], first["id"]], "split": ["train", "val"],
                  "label": [second["label"], first["label"]], "suggested": [other, other],
                  "label_quality": [0.2, 0.01], "text_hash": ["a", "b"]}
                 ).to_parquet(repo / "data/label_audit/suspects.parquet")
    summary = queue_review(repo, n=1)
    batch = pd.read_csv(summary["path"])
    assert list(batch["id"]) == [first["id"]]  # the lowest label quality first
    assert batch["suggested_label"][0] == other and batch["suggested_score"][0] == 0.99
    # the reviewer agrees with the audit: a correction, the row keeps its text
    report = import_annotations(repo, csv_annotations(repo, [{"id": first["id"],
                                                              "label": other}]), "csv")
    assert report["corrections"] == 1 and report["new_texts"] == 0
    # next round: the corrected suspect is done, the other one is next
    assert list(pd.read_csv(queue_review(repo, n=5)["path"])["id"]) == [second["id"]]
    assert queue_review(repo, n=5)["path"] is None
