"""imports: bring labels back from people as a new, append-only batch of the dataset.

    python -m labelling.imports --csv labels.csv [--annotator NAME]   # id,label[,annotator]
    python -m labelling.imports --export export.json                  # a Label Studio JSON export
    python -m labelling.imports --label-studio                        # pull it over the API
        [--accept-new-class LABEL ...]

An id is either in the labelling queue (a text chosen by ``labelling.select``: a new text) or
already in the dataset (a correction: only its label changes). The rules, each refusing the whole
import with what, where and how to fix it, so a failed import writes nothing:

- an id that is neither queued nor in the dataset is refused;
- a task whose text no longer matches the queued or dataset text of its id is refused;
- a label outside the current label set (and the out-of-scope label) is refused unless accepted
  with ``--accept-new-class`` (it then trains once it has ``ingest.new_class_min_rows`` rows);

and, without refusing:

- skipped or empty annotations are ignored;
- texts on which annotators disagree are listed and not imported;
- a label the dataset already has is not imported again: the same export twice adds nothing.

What is left is written, atomically, as one new CSV under ``ingest.imports`` and, in a git
checkout, committed on its own (``--no-commit``: leave that to you); ``dvc repro`` then trains on
the new version (``python -m commands.notify`` tells the Prefect deployment). More:
docs/labelling.md.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.common import StageError, get_logger, run_cli

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

ANNOTATION_COLUMNS = ("id", "text", "label", "annotator", "annotated_at", "skipped")


def annotations_from_csv(path: str, annotator: str) -> pd.DataFrame:
    """A plain ``id,label[,annotator]`` table (CSV, JSONL or Parquet) as annotation rows; a row
    without a label counts as skipped."""
    import pandas as pd

    from stages.input_checks import select_columns
    from stages.tables import read_table

    rows = select_columns(read_table(path, "labels to import"),
                          {"required": ["id", "label"], "optional": ["annotator"]},
                          "labels to import", path)
    label = rows["label"].str.strip()
    return pd.DataFrame({
        "id": rows["id"].str.strip(), "text": pd.NA, "label": label,
        "annotator": rows["annotator"].fillna(annotator) if "annotator" in rows else annotator,
        "annotated_at": pd.NA, "skipped": label.isna() | (label == "")},
        columns=ANNOTATION_COLUMNS)


def current_state(repo: Path) -> dict[str, Any]:
    """What an import is checked against: the dataset's texts and labels (batches applied, new
    classes not held back), the queue, the label set and the batch directory."""
    from labelling.params import LabellingParams, ingest_params
    from labelling.queue import queued
    from stages.common import load_params
    from stages.dataset import apply_batches, read_batches, read_source
    from stages.oos_params import OosParams

    ingest = ingest_params(repo)
    texts, labels = read_source(ingest)
    texts, labels, _ = apply_batches(texts, labels, read_batches(ingest.imports), 1)
    oos_label = load_params("oos", OosParams, repo / "params.yaml").label
    queue = queued(repo / load_params("labelling", LabellingParams, repo / "params.yaml").queue)
    return {"texts": texts, "labels": labels, "queue": queue.drop_duplicates("id", keep="last"),
            "label_set": set(labels["label"].dropna()) | ({oos_label} if oos_label else set()),
            "imports": Path(ingest.imports), "new_class_min_rows": ingest.new_class_min_rows}


def _refuse_unknown_ids(ann: pd.DataFrame, where: str) -> None:
    unknown = ann[ann["known_text"].isna()]
    if len(unknown):
        raise StageError(f"{len(unknown)} annotation(s) for id(s) neither queued for labelling nor "
                         f"in the dataset, e.g. {unknown['id'].head(5).tolist()}", where=where,
                         fix="import labels only for ids from the queue (python -m "
                             "labelling.select) or already in the dataset")


def _refuse_changed_texts(ann: pd.DataFrame, where: str) -> None:
    from stages.data import normalise_text

    with_text = ann[ann["text"].notna()]
    changed = with_text[[normalise_text(a) != normalise_text(b) for a, b in
                         zip(with_text["text"], with_text["known_text"], strict=True)]]
    if len(changed):
        first = changed.iloc[0]
        raise StageError(f"{len(changed)} task(s) carry another text than the one queued or in "
                         f"the dataset for their id, e.g. id {first['id']!r}: "
                         f"{str(first['text'])[:80]!r} vs {str(first['known_text'])[:80]!r}",
                         where=where, fix="the task was edited or belongs to another dataset: "
                                          "fix or delete the task and export again")


def _refuse_unknown_labels(ann: pd.DataFrame, label_set: set[str], accept: set[str],
                           where: str) -> None:
    unknown = sorted(set(ann["label"]) - label_set - accept)
    if unknown:
        counts = ann["label"].value_counts()
        listed = ", ".join(f"{label!r} ({counts[label]} row(s))" for label in unknown)
        raise StageError(f"unknown label(s): {listed}; the label set has {len(label_set)} "
                         "classes", where=where,
                         fix="correct the labels, or accept a new class on purpose: "
                             + " ".join(f"--accept-new-class {label!r}" for label in unknown))


def plan_import(annotations: pd.DataFrame, state: dict[str, Any], origin: str,
                accept_new: set[str] | None = None, where: str = "the import"
                ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The batch rows to write and what happened to every annotation; raises on a refusal."""
    import pandas as pd

    from stages.dataset import BATCH_COLUMNS

    accept = set(accept_new or ())
    ann = annotations.reindex(columns=list(ANNOTATION_COLUMNS)).copy()
    ann["label"] = ann["label"].astype("string").str.strip()
    skipped = ann["skipped"].fillna(False).astype(bool) | ann["label"].isna() | (ann["label"] == "")
    report: dict[str, Any] = {"annotations": len(ann), "skipped": int(skipped.sum())}
    ann = ann[~skipped].astype({"id": "string"})
    known = pd.concat([state["queue"][["id", "text"]], state["texts"][["id", "text"]]]
                      ).drop_duplicates("id", keep="last").set_index("id")["text"]
    ann["known_text"] = ann["id"].map(known)
    _refuse_unknown_ids(ann, where)
    _refuse_changed_texts(ann, where)
    _refuse_unknown_labels(ann, state["label_set"], accept, where)

    per_id = ann.groupby("id", sort=False)
    verdicts = per_id["label"].nunique()
    disagree = verdicts[verdicts > 1].index
    report["disagreements"] = [
        {"id": i, "text": str(known[i]),
         "labels": {str(a): str(lab) for a, lab in zip(g["annotator"], g["label"], strict=True)}}
        for i, g in ann[ann["id"].isin(disagree)].groupby("id", sort=False)]
    agreed = ann[~ann["id"].isin(disagree)]
    rows = agreed.groupby("id", sort=False).agg(
        label=("label", "first"),
        annotator=("annotator", lambda a: ";".join(sorted({str(x) for x in a.dropna()}))),
        labelled_at=("annotated_at", lambda t: t.dropna().max() if t.notna().any() else None),
    ).reset_index()
    current = state["labels"].set_index("id")["label"]
    unchanged = rows["id"].map(current) == rows["label"]
    report["unchanged"] = int(unchanged.fillna(False).sum())
    rows = rows[~unchanged.fillna(False).astype(bool)].reset_index(drop=True)
    suggestion = state["queue"].set_index("id")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    batch = pd.DataFrame({
        "id": rows["id"], "text": rows["id"].map(known),
        "label": rows["label"], "annotator": rows["annotator"].replace("", "unknown"),
        "labelled_at": rows["labelled_at"].fillna(now),
        "suggested_label": rows["id"].map(suggestion.get("suggested_label", pd.Series())),
        "suggested_score": rows["id"].map(suggestion.get("suggested_score", pd.Series())),
        "model_version": rows["id"].map(suggestion.get("model_version", pd.Series())),
        "origin": origin,
        "new_class": ~rows["label"].isin(state["label_set"])}, columns=list(BATCH_COLUMNS))
    batch["new_class"] = batch["new_class"].map({True: "true", False: "false"})
    report.update(imported=len(batch),
                  new_texts=int((~batch["id"].isin(state["texts"]["id"])).sum()),
                  corrections=int(batch["id"].isin(state["texts"]["id"]).sum()))
    new_classes = sorted(set(batch.loc[batch["new_class"] == "true", "label"]))
    report["new_classes"] = {c: int((batch["label"] == c).sum()) for c in new_classes}
    return batch, report


def write_import(batch: pd.DataFrame, state: dict[str, Any], origin: str) -> Path:
    """The batch as a new file in the imports directory, checked the way ingest will read it."""
    from labelling.queue import stamp
    from stages.dataset import apply_batches
    from stages.io import atomic_path

    path = state["imports"] / f"{stamp()}-{origin}.csv"
    # ingest must accept the dataset with this batch: check it before anything is written
    apply_batches(state["texts"], state["labels"], batch.astype("string").assign(batch=path.name), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        batch.to_csv(tmp, index=False)
    return path


def commit_batch(repo: Path, path: Path, message: str) -> str | None:
    """Commit the batch alone (other staged or modified files are left as they are): the new
    version of the data is a commit; None outside a git checkout."""
    from stages.vcs import git, git_try

    if git_try("rev-parse", "--is-inside-work-tree", cwd=repo).returncode != 0:
        return None
    rel = path.relative_to(repo).as_posix()
    try:
        git("add", "--", rel, cwd=repo)
        git("commit", "-q", "-m", message, "--", rel, cwd=repo, what="git commit of the import batch")
    except BaseException:  # no identity, a hook refused...: the import did not happen
        git_try("reset", "-q", "--", rel, cwd=repo)
        path.unlink(missing_ok=True)
        raise
    return git("rev-parse", "HEAD", cwd=repo)


def import_annotations(repo: Path, annotations: pd.DataFrame, origin: str,
                       accept_new: set[str] | None = None, where: str = "the import",
                       commit: bool = True) -> dict[str, Any]:
    """Check ``annotations`` against the dataset and write what is new as one batch; in a git
    checkout also commit it (``commit``)."""
    state = current_state(repo)
    batch, report = plan_import(annotations, state, origin, accept_new, where)
    if batch.empty:
        report.update(batch=None, message="nothing new to import: every label is already in "
                                          "the dataset (or was skipped or disputed)")
        return report
    path = write_import(batch, state, origin)
    summary = (f"{len(batch)} label(s) from {origin}: {report['new_texts']} new text(s), "
               f"{report['corrections']} correction(s)")
    report.update(batch=str(path), commit=commit_batch(
        repo, path, f"labels: import {summary}\n\nBatch {path.name}, from {where}.") if commit
        else None, message=f"imported {summary}, into {path}")
    for label, rows in report["new_classes"].items():
        total = int((state["labels"]["label"] == label).sum()) + rows
        if total < state["new_class_min_rows"]:
            log.warning("new class %r: %d of the %d rows it needs before it trains "
                        "(ingest.new_class_min_rows)", label, total, state["new_class_min_rows"])
    return report


def annotations_from_studio(export_file: str | None, repo: Path) -> tuple[pd.DataFrame, str]:
    """Annotations from a Label Studio JSON export file, or pulled from the server (env)."""
    from labelling.studio import annotations_from_export

    if export_file:
        try:
            tasks = json.loads(Path(export_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StageError(f"cannot read the Label Studio export: {exc}", where=export_file,
                             fix="export the project as JSON (Export > JSON) and pass that file"
                             ) from exc
        if not isinstance(tasks, list):
            raise StageError("a Label Studio JSON export is a list of tasks", where=export_file,
                             fix="export the project as JSON, not JSON_MIN or CSV")
        return annotations_from_export(tasks), export_file
    from labelling.studio_push import pull_annotations

    return pull_annotations(repo)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m labelling.imports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE", help="id,label[,annotator] table")
    source.add_argument("--export", metavar="FILE", help="a Label Studio JSON export file")
    source.add_argument("--label-studio", action="store_true",
                        help="pull the export from LABEL_STUDIO_URL with LABEL_STUDIO_API_KEY")
    parser.add_argument("--annotator", default="csv",
                        help="who labelled a CSV without an annotator column (default: csv)")
    parser.add_argument("--accept-new-class", action="append", default=[], metavar="LABEL",
                        help="accept this label as a new class (repeatable)")
    parser.add_argument("--no-commit", action="store_true",
                        help="write the batch but do not commit it (in a git checkout)")
    args = parser.parse_args()
    if args.csv:
        annotations, origin, where = annotations_from_csv(args.csv, args.annotator), "csv", args.csv
    else:
        (annotations, where), origin = annotations_from_studio(args.export, Path.cwd()), \
            "label-studio"
    report = import_annotations(Path.cwd(), annotations, origin, set(args.accept_new_class), where,
                                commit=not args.no_commit)
    for d in report["disagreements"]:
        print(f"not imported, annotators disagree: {d['id']} {d['text'][:60]!r} {d['labels']}")
    print(json.dumps({k: v for k, v in report.items() if k not in ("disagreements", "message")}
                     | {"disagreements": len(report["disagreements"])}))
    print(f"imports: {report['message']}")


if __name__ == "__main__":
    run_cli(main)
