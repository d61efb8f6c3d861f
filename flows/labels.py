"""labelling: the Prefect flows that bring people into the loop (no ML here: labelling/ does it).

    python -m flows.labels select [--end ISO] [--hours 24] [--n 50] [--strategy hybrid]
    python -m flows.labels import (--csv FILE | --export FILE | --label-studio)
        [--accept-new-class LABEL ...]

``select`` is what a drift event runs (the ``label-on-drift`` deployment): drift means the model
meets texts it has not learnt, and retraining on the same data cannot fix that; new labels can.
It queues a batch chosen from the prediction log and, when LABEL_STUDIO_URL is set, sends it to
the Label Studio project; the run's artifact says where the batch is. ``import`` brings the
labels back as a new batch of the dataset and emits ``retrainer.data.arrived``, so the
``on-data-arrived`` deployment retrains on the new version. Not named labelling.py: Prefect
loads a deployment's entrypoint as a module named after its file, which would shadow the
labelling package. More: docs/labelling.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.refusal import refused
from stages.common import StageError, run_cli


def checkout(repo_dir: str | None) -> Path:
    return Path(repo_dir or os.environ.get("RETRAINER_REPO") or os.getcwd()).resolve()


@task(name="push to Label Studio", retries=2, retry_delay_seconds=10)
def push_task(repo: Path, batch: Path) -> dict[str, Any]:
    from labelling.studio_push import push_batch

    return push_batch(repo, batch)


@flow(name="select-for-labelling")
def select_for_labelling(repo_dir: str | None = None, end: str | None = None,
                         hours: int | None = None, n: int | None = None,
                         strategy: str | None = None, push: bool | None = None,
                         reason: str = "manual") -> Any:
    """Queue the next labelling batch from the prediction log; push it to Label Studio.

    push: send the batch to Label Studio (default: when LABEL_STUDIO_URL is set).
    reason: why this run happened (set by the drift trigger).
    """
    from labelling.select import queue_batch
    from monitor.log import as_utc

    logger, repo = get_run_logger(), checkout(repo_dir)
    logger.info("choosing texts to label in %s (reason: %s)", repo, reason)
    try:
        summary = queue_batch(repo, as_utc(end) if end else datetime.now(UTC), hours, n, strategy)
        if summary["path"] and (push if push is not None else bool(os.environ.get(
                "LABEL_STUDIO_URL"))):
            summary["pushed"] = push_task(repo, Path(summary["path"]))
    except StageError as exc:
        return refused(exc, "labelling-failure", "Choosing texts to label failed")
    where = (f"Label Studio: [{summary['pushed']['project']}]({summary['pushed']['url']}) "
             f"({summary['pushed']['tasks_pushed']} new task(s))" if summary.get("pushed")
             else "not pushed to Label Studio: label the file, then `python -m labelling.imports "
                  "--csv FILE` (id,label[,annotator])")
    counts = summary["counts"]
    create_markdown_artifact(
        key="labelling-batch", description=summary["message"],
        markdown=f"# Labelling batch\n\nReason: {reason}.\n\n{summary['message']}.\n\n"
                 f"Where to label: {where}.\n\nWindow {summary['window']}, strategy "
                 f"`{summary['strategy']}`: {counts.get('predictions', 0)} predictions, "
                 f"{counts.get('candidates', 0)} candidates, {counts.get('selected', 0)} "
                 f"selected ({counts.get('hash_only', 0)} without text, "
                 f"{counts.get('already_labelled_or_queued', 0)} already labelled or queued).\n")
    logger.info("%s; %s", summary["message"], where)
    return summary


@flow(name="import-labels")
def import_labels(repo_dir: str | None = None, csv: str | None = None,
                  export: str | None = None, label_studio: bool = False,
                  accept_new_class: list[str] | None = None, annotator: str = "csv",
                  notify: bool = True) -> Any:
    """Import labels (a CSV, an export file, or the Label Studio project) as a new batch;
    emit retrainer.data.arrived when something was imported (``notify``)."""
    from labelling.imports import annotations_from_csv, annotations_from_studio, import_annotations

    logger, repo = get_run_logger(), checkout(repo_dir)
    try:
        if sum(map(bool, (csv, export, label_studio))) != 1:
            raise StageError("say where the labels are: exactly one of csv, export, label_studio",
                             fix="python -m flows.labels import --label-studio")
        if csv:
            annotations, origin, where = annotations_from_csv(csv, annotator), "csv", csv
        else:
            (annotations, where), origin = annotations_from_studio(export, repo), "label-studio"
        report = import_annotations(repo, annotations, origin, set(accept_new_class or ()), where)
    except StageError as exc:
        return refused(exc, "import-failure", "Label import refused")
    disputed = "".join(f"\n| `{d['id']}` | {d['text'][:80]} | {d['labels']} |"
                       for d in report["disagreements"])
    create_markdown_artifact(
        key="label-import", description=report["message"],
        markdown=f"# Label import\n\n{report['message']}.\n\nFrom {where}: "
                 f"{report['annotations']} annotation(s), {report['skipped']} skipped, "
                 f"{report['unchanged']} already in the dataset, "
                 f"{len(report['disagreements'])} disputed (not imported)."
                 + (f"\n\n| id | text | labels |\n|---|---|---|{disputed}" if disputed else ""))
    logger.info(report["message"])
    if report["batch"] and notify and os.environ.get("PREFECT_API_URL"):
        from commands.notify import emit, snapshot

        report["event"] = emit({"sources": snapshot(repo / "params.yaml"), "changed": ["imports"],
                                "batch": report["batch"]}, repo)
        logger.info("emitted retrainer.data.arrived: the on-data-arrived deployment retrains")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.labels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sel = sub.add_parser("select", help="queue a labelling batch from the prediction log")
    sel.add_argument("--end")
    sel.add_argument("--hours", type=int)
    sel.add_argument("--n", type=int)
    sel.add_argument("--strategy")
    sel.add_argument("--push", action=argparse.BooleanOptionalAction, default=None)
    imp = sub.add_parser("import", help="import labels as a new batch of the dataset")
    src = imp.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv")
    src.add_argument("--export")
    src.add_argument("--label-studio", action="store_true")
    imp.add_argument("--accept-new-class", action="append", default=[])
    imp.add_argument("--annotator", default="csv")
    args = parser.parse_args()
    if args.command == "select":
        state = select_for_labelling(end=args.end, hours=args.hours, n=args.n,
                                     strategy=args.strategy, push=args.push, return_state=True)
    else:
        state = import_labels(csv=args.csv, export=args.export, label_studio=args.label_studio,
                              accept_new_class=args.accept_new_class, annotator=args.annotator,
                              return_state=True)
    result = state.result(raise_on_failure=False) if state.is_completed() else None
    print(f"labelling: {state.name}: {result['message'] if result else state.message or ''}")
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    run_cli(main)
