"""select: choose which logged texts people should label next, and queue them.

    python -m labelling.select [--end 2026-12-01T14:00Z] [--hours 24] [--n 50] [--strategy NAME]
        [--push]            # also send the batch to Label Studio (labelling.studio)

Reads a window of the prediction log, leaves out texts already labelled or already queued (by
normalised text) and hash-only rows, and writes one batch to the queue (labelling/queue.py).
The strategies, in numpy:

    random        a uniform sample (the baseline every other strategy is measured against)
    uncertainty   the default: the smallest margin between the two most probable classes (or
                  the highest entropy): where the model is least sure
    novelty       the furthest from the labelled data (1 - cosine similarity to the nearest
                  labelled embedding): what the model has not seen
    hybrid        the ``hybrid_candidates`` x n most uncertain or novel texts, then
                  greedy k-center on their embeddings, counting the labelled data as centres
                  already chosen, so the batch covers different regions instead of filling up
                  with paraphrases of one new intent

``choose`` is pure (arrays in, row indices out), so the active-learning benchmark runs exactly the
function the ``labelling.select`` command runs. Measured: benchmarks/RESULTS.md, "Active learning".
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.common import StageError, get_logger, run_cli

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = get_logger(__name__)

STRATEGIES = ("random", "uncertainty", "novelty", "hybrid")
UNCERTAINTY_MEASURES = ("margin", "entropy")
NEEDS_EMBEDDINGS = ("novelty", "hybrid")


def uncertainty(probs: np.ndarray, measure: str = "margin") -> np.ndarray:
    """Higher means less sure: 1 - (top-1 - top-2 probability), or the entropy in nats."""
    import numpy as np

    probs = np.asarray(probs, dtype=np.float64)
    if measure == "entropy":
        return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)
    if probs.shape[1] < 2:
        return np.zeros(len(probs))
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def unit_rows(x: np.ndarray) -> np.ndarray:
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_distance(embeddings: np.ndarray, reference: np.ndarray | None,
                     chunk: int = 2048) -> np.ndarray:
    """1 - cosine similarity of each row to its nearest reference row (1.0 without a reference)."""
    import numpy as np

    if reference is None or len(reference) == 0:
        return np.ones(len(embeddings))
    emb, ref = unit_rows(embeddings), unit_rows(reference)
    out = np.empty(len(emb))
    for start in range(0, len(emb), chunk):
        out[start:start + chunk] = 1.0 - (emb[start:start + chunk] @ ref.T).max(axis=1)
    return out


def k_center(embeddings: np.ndarray, n: int, start_distance: np.ndarray,
             first: int | None = None) -> list[int]:
    """Greedy k-center: repeatedly take the row furthest (cosine) from everything chosen so far;
    ``start_distance`` is each row's distance to what is chosen already (the labelled data)."""
    import numpy as np

    emb = unit_rows(embeddings)
    distance = np.asarray(start_distance, dtype=np.float64).copy()
    chosen: list[int] = []
    pick = int(np.argmax(distance)) if first is None else first
    while len(chosen) < min(n, len(emb)):
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - emb @ emb[pick])
        distance[chosen] = -np.inf
        pick = int(np.argmax(distance))
    return chosen


def choose(strategy: str, n: int, probs: np.ndarray, embeddings: np.ndarray | None = None,
           labelled: np.ndarray | None = None, seed: int = 0, measure: str = "margin",
           hybrid_candidates: int = 5) -> np.ndarray:
    """Indices (into ``probs``' rows) of at most ``n`` texts to label, most wanted first.

    probs: the model's class probabilities, one row per candidate text.
    embeddings: the candidates' pooled embeddings (novelty and hybrid need them).
    labelled: embeddings of texts already labelled (novelty distance, hybrid's first centres).
    """
    import numpy as np

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if measure not in UNCERTAINTY_MEASURES:
        raise ValueError(f"unknown uncertainty measure {measure!r}: margin or entropy")
    rows = len(probs)
    n = min(n, rows)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if strategy in NEEDS_EMBEDDINGS and (embeddings is None or len(embeddings) != rows):
        raise ValueError(f"the {strategy} strategy needs one embedding per candidate text")
    if strategy == "random":
        return np.random.default_rng(seed).choice(rows, size=n, replace=False)
    if strategy == "uncertainty":
        return np.argsort(-uncertainty(probs, measure), kind="stable")[:n]
    novelty = nearest_distance(embeddings, labelled)
    if strategy == "novelty":
        return np.argsort(-novelty, kind="stable")[:n]
    # hybrid: informative candidates first (uncertain or novel: the better of the two ranks),
    # then spread the batch over them
    unsure_rank = np.argsort(np.argsort(-uncertainty(probs, measure), kind="stable"))
    novel_rank = np.argsort(np.argsort(-novelty, kind="stable"))
    order = np.lexsort((np.maximum(unsure_rank, novel_rank), np.minimum(unsure_rank, novel_rank)))
    candidates = order[:max(n, hybrid_candidates * n)]
    picked = k_center(embeddings[candidates], n, novelty[candidates])
    return candidates[picked]


# ---------------------------------------------------------------- the command


def labelled_embeddings(repo: Path) -> np.ndarray | None:
    """What the champion has seen: its monitor reference's embeddings (None without a champion
    or with a logits-only model; novelty then counts every text as new)."""
    from monitor.reference import load_reference
    from stages import artifacts

    champion = artifacts.champion_dir(repo / artifacts.CHAMPION_POINTER, require=False)
    if champion is None or not (repo / champion / artifacts.MONITOR_REFERENCE).is_dir():
        return None
    return load_reference(repo / champion / artifacts.MONITOR_REFERENCE).embeddings()


def candidates(frame: pd.DataFrame, known: set[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The window's rows people can label: with text, not blank, each normalised text once (the
    latest), not in ``known`` (labelled or queued); and how many rows each rule left out."""
    from stages.data import normalise_text

    counts = {"predictions": len(frame)}
    has_text = frame["text"].notna() if "text" in frame else frame["ts"].isna()
    counts["hash_only"] = int((~has_text).sum())
    frame = frame[has_text].assign(key=lambda f: f["text"].map(normalise_text))
    blank = frame["key"] == ""
    counts["blank"] = int(blank.sum())
    frame = frame[~blank]
    before = len(frame)
    frame = frame.drop_duplicates("key", keep="last")
    counts["repeated"] = before - len(frame)
    seen = frame["key"].isin(known)
    counts["already_labelled_or_queued"] = int(seen.sum())
    return frame[~seen].reset_index(drop=True), counts


def select_batch(repo: Path, end: datetime, hours: int | None = None, n: int | None = None,
                 strategy: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The next labelling batch from the log window ending at ``end`` (not yet written)."""
    import numpy as np
    import pandas as pd

    from labelling.params import LabellingParams, ingest_params
    from labelling.queue import QUEUE_COLUMNS, queued, text_id
    from monitor.log import read_window
    from stages.common import load_params
    from stages.data import normalise_text
    from stages.dataset import build_dataset

    overrides = {k: v for k, v in (("window_hours", hours), ("batch_size", n),
                                   ("strategy", strategy)) if v is not None}
    params = load_params("labelling", LabellingParams, repo / "params.yaml", overrides)
    start = end - timedelta(hours=params.window_hours)
    window = read_window(repo / params.log_dir, start, end)
    where = f"{repo / params.log_dir} ({start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC)"
    if len(window) == 0:
        raise StageError("no predictions in the window: nothing to choose from", where=where,
                         fix="choose another window (--end, --hours), or check serve.log_dir")
    texts, _, _ = build_dataset(ingest_params(repo))
    known = set(texts["text"].map(normalise_text)) | set(
        queued(repo / params.queue)["text"].map(normalise_text))
    pool, counts = candidates(window.frame, known)
    if counts["hash_only"] == counts["predictions"]:
        raise StageError(f"the {counts['predictions']} predictions in the window were logged "
                         "without their text (serve.log_text: false): a hash cannot be "
                         "labelled", where=where,
                         fix="log texts (serve.log_text: true) where people may read them, "
                             "or label texts from another source with a CSV import")
    if params.strategy in NEEDS_EMBEDDINGS:
        has_emb = pool["embedding"].map(lambda e: e is not None and len(e) > 0) \
            if "embedding" in pool else pd.Series(False, index=pool.index)
        counts["no_embedding"] = int((~has_emb).sum())
        if len(pool) and not has_emb.any():
            raise StageError(f"the {params.strategy} strategy needs the logged embeddings, and "
                             "this window has none (a logits-only model)", where=where,
                             fix="use --strategy uncertainty or random")
        pool = pool[has_emb].reset_index(drop=True)
    probs = np.stack(pool["probs"].to_numpy()) if len(pool) else np.zeros((0, 1))
    emb = (np.stack(pool["embedding"].to_numpy()).astype(np.float32)
           if params.strategy in NEEDS_EMBEDDINGS and len(pool) else None)
    labelled = labelled_embeddings(repo) if params.strategy in NEEDS_EMBEDDINGS else None
    if labelled is not None and emb is not None and labelled.shape[1] != emb.shape[1]:
        log.warning("the champion's reference embeddings are %d-wide, the log's %d: novelty "
                    "ignores the reference", labelled.shape[1], emb.shape[1])
        labelled = None
    picked = choose(params.strategy, params.batch_size, probs, emb, labelled, params.seed,
                    params.uncertainty, params.hybrid_candidates)
    chosen = pool.iloc[picked]
    rows = pd.DataFrame({
        "id": chosen["text"].map(text_id).to_numpy(), "text": chosen["text"].to_numpy(),
        "suggested_label": chosen["label"].to_numpy(),
        "suggested_score": chosen["confidence"].astype(float).round(6).to_numpy(),
        "model_version": chosen.get("model_version", pd.Series(None, index=chosen.index)).to_numpy(),
        "strategy": params.strategy, "rank": np.arange(1, len(chosen) + 1),
        "selected_at": datetime.now(UTC).isoformat(timespec="seconds")}, columns=QUEUE_COLUMNS)
    counts.update(candidates=len(pool), selected=len(rows))
    return rows, {"window": f"{start.isoformat()}..{end.isoformat()}", "strategy": params.strategy,
                  "counts": counts, "queue": str(repo / params.queue), "project": params.project}


def queue_batch(repo: Path, end: datetime, hours: int | None = None, n: int | None = None,
                strategy: str | None = None) -> dict[str, Any]:
    """Select and write the next batch to the queue; the summary says where it went."""
    from labelling.queue import write_batch

    rows, summary = select_batch(repo, end, hours, n, strategy)
    if rows.empty:
        summary.update(path=None, message="nothing to label: every text in the window is "
                                          "already labelled or queued")
        return summary
    path = write_batch(repo / summary["queue"], rows, summary["strategy"])
    summary.update(path=str(path), message=f"{len(rows)} text(s) queued for labelling in {path}")
    return summary


def main() -> None:
    from monitor.log import as_utc

    parser = argparse.ArgumentParser(prog="python -m labelling.select", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--end", help="window end, ISO UTC (default: now)")
    parser.add_argument("--hours", type=int, help="window length (default labelling.window_hours)")
    parser.add_argument("--n", type=int, help="batch size (default labelling.batch_size)")
    parser.add_argument("--strategy", choices=STRATEGIES, help="default labelling.strategy")
    parser.add_argument("--push", action="store_true",
                        help="send the batch to Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)")
    args = parser.parse_args()
    repo = Path.cwd()
    end = as_utc(args.end) if args.end else datetime.now(UTC)
    summary = queue_batch(repo, end, args.hours, args.n, args.strategy)
    if args.push and summary["path"]:
        from labelling.studio_push import push_batch

        summary["pushed"] = push_batch(repo, Path(summary["path"]))
    print(json.dumps(summary["counts"]))
    print(f"select: {summary['message']}")


if __name__ == "__main__":
    run_cli(main)
