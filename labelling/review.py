"""review: the label audit's suspects as a review batch for people (corrections, not new texts).

    python -m labelling.review [--n 50] [--push]

The label_audit stage lists the train and val rows whose label is probably wrong
(data/label_audit/suspects.parquet: id, label, suggested, label_quality). This queues the most
suspicious ones, lowest label quality first, with the audit's suggestion as the pre-annotation,
so a reviewer confirms or corrects each label in Label Studio. Imported back with
``labelling.imports``, a changed label is a correction (a labels-only change: the row keeps its
split); a confirmed one is already in the dataset and adds nothing. More: docs/labelling.md.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.common import StageError, run_cli

if TYPE_CHECKING:
    import pandas as pd

STRATEGY = "label-audit"


def review_batch(repo: Path, n: int | None = None) -> pd.DataFrame:
    """Up to ``n`` suspects (default labelling.batch_size) not already queued, as queue rows."""
    import pandas as pd

    from labelling.params import LabellingParams, ingest_params
    from labelling.queue import QUEUE_COLUMNS, queued
    from stages import artifacts
    from stages.common import load_params
    from stages.dataset import build_dataset

    suspects_file = repo / artifacts.LABEL_AUDIT_SUSPECTS
    if not suspects_file.is_file():
        raise StageError("there is no label audit to review", where=str(suspects_file),
                         fix="run `dvc repro label_audit` first")
    params = load_params("labelling", LabellingParams, repo / "params.yaml")
    suspects = pd.read_parquet(suspects_file).sort_values("label_quality", kind="stable")
    texts, labels, _ = build_dataset(ingest_params(repo))
    current = labels.set_index("id")["label"]
    # a suspect people already corrected (its label is no longer the audited one) is done
    suspects = suspects[suspects["id"].map(current) == suspects["label"]]
    suspects = suspects[~suspects["id"].isin(set(queued(repo / params.queue)["id"]))]
    chosen = suspects.head(n or params.batch_size)
    text = texts.set_index("id")["text"]
    return pd.DataFrame({
        "id": chosen["id"].to_numpy(), "text": chosen["id"].map(text).to_numpy(),
        "suggested_label": chosen["suggested"].to_numpy(),
        "suggested_score": (1.0 - chosen["label_quality"]).round(6).to_numpy(),
        "model_version": STRATEGY, "strategy": STRATEGY,
        "rank": range(1, len(chosen) + 1),
        "selected_at": datetime.now(UTC).isoformat(timespec="seconds")}, columns=QUEUE_COLUMNS)


def queue_review(repo: Path, n: int | None = None) -> dict[str, Any]:
    """Write the review batch to the queue; the summary says where it went."""
    from labelling.params import LabellingParams
    from labelling.queue import write_batch
    from stages.common import load_params

    rows = review_batch(repo, n)
    if rows.empty:
        return {"path": None, "rows": 0, "message": "nothing to review: every suspect is "
                                                    "queued or already corrected"}
    queue = repo / load_params("labelling", LabellingParams, repo / "params.yaml").queue
    path = write_batch(queue, rows, STRATEGY)
    return {"path": str(path), "rows": len(rows),
            "message": f"{len(rows)} suspect label(s) queued for review in {path}"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m labelling.review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, help="batch size (default labelling.batch_size)")
    parser.add_argument("--push", action="store_true",
                        help="send the batch to Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)")
    args = parser.parse_args()
    repo = Path.cwd()
    summary = queue_review(repo, args.n)
    if args.push and summary["path"]:
        from labelling.studio_push import push_batch

        summary["pushed"] = push_batch(repo, Path(summary["path"]))
        print(json.dumps(summary["pushed"]))
    print(f"review: {summary['message']}")


if __name__ == "__main__":
    run_cli(main)
