"""One monitored window: run every detector, decide the status, pick rows for labelling.

``check_window`` is pure (arrays in, a JSON-able report out); reading the log is monitor.log's job
and writing the report monitor.report's, so the drift benchmark runs exactly this function on
thousands of resampled windows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from statistics import median
from typing import TYPE_CHECKING, Any

from monitor.detectors import (
    MonitorParams,
    Result,
    accuracy_drift,
    embedding_drift,
    ks_drift,
    label_drift,
    novelty_drift,
    oos_drift,
    share_drift,
)
from monitor.reference import Reference, calibrated
from stages.common import StageError

if TYPE_CHECKING:
    import pandas as pd

    from monitor.log import Window

OK, DRIFT, NOT_ENOUGH = "ok", "drift", "not enough data"


def volume(n: int, history: list[dict[str, Any]], last: int = 24) -> dict[str, Any]:
    """Predictions in this window vs the median of the last windows (reported, never an alarm:
    traffic changes are not a reason to retrain, but a collapse to zero is worth a look)."""
    previous = [h["predictions"] for h in history[-last:] if "predictions" in h]
    base = median(previous) if previous else None
    return {"predictions": n, "median_previous": base,
            "ratio_to_median": round(n / base, 4) if base else None,
            "previous_windows": len(previous)}


def check_window(reference: Reference, window: Window, params: MonitorParams,
                 history: list[dict[str, Any]] | None = None,
                 ) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The window's report (status ok | drift | not enough data) and its labelling sample."""

    history = history or []
    if 1 / (params.permutations + 1) > params.alpha:
        raise StageError(f"monitor.permutations {params.permutations} cannot give a p-value below "
                         f"monitor.alpha {params.alpha}: the embedding test could never fire",
                         where="params.yaml:monitor",
                         fix=f"set permutations >= {int(1 / params.alpha)} or raise alpha")
    n = len(window)
    frame = window.frame
    report: dict[str, Any] = {
        "window": window.name, "start": window.start.isoformat(), "end": window.end.isoformat(),
        "predictions": n, "files": window.files, "skipped_files": window.skipped,
        "volume": volume(n, history), "min_predictions": params.min_predictions,
        "reference": {"path": str(reference.path), "rows": len(reference.table),
                      "model_sha256": reference.meta["model"]["sha256"],
                      "accuracy": reference.meta["accuracy"],
                      "estimated_accuracy": reference.meta["estimated_accuracy"]},
        "text_logged": bool(n and "text" in frame and frame["text"].notna().any()),
        "model_versions": dict(Counter(frame["model_version"].astype(str))) if n and
        "model_version" in frame else {},
        "params": asdict(params),
    }
    if n < params.min_predictions:
        report.update(status=NOT_ENOUGH, alarms=[], detectors=[],
                      message=f"not enough data: {n} predictions in the window, at least "
                              f"{params.min_predictions} needed (monitor.min_predictions)")
        return report, None

    labels = reference.labels
    ref_probs, win_probs = reference.probs(), window.probs()
    ref_conf, win_conf = ref_probs.max(1), win_probs.max(1)
    ref_tokens = reference.table["n_tokens"].to_numpy()
    win_tokens = frame["n_tokens"].to_numpy()
    cal = reference.meta["calibration"]
    win_emb = window.embeddings()
    ref_emb = reference.embeddings()
    emb_result, emb_rows, witness = embedding_drift(
        ref_emb, win_emb, reference.meta["embedding_bandwidth"], params)
    results: list[Result] = [
        label_drift(ref_probs.argmax(1), win_probs.argmax(1), len(labels), params.alpha),
        ks_drift("confidence", ref_conf, win_conf, params.alpha),
        ks_drift("length", ref_tokens, win_tokens, params.alpha),
        emb_result,
        novelty_drift(ref_emb, win_emb, params),
        accuracy_drift(reference.meta["estimated_accuracy"], calibrated(win_conf, cal),
                       reference.meta["accuracy"], params.max_accuracy_drop),
        share_drift("truncated", frame["truncated"].to_numpy(dtype=bool),
                    reference.meta["truncated_share"], params.max_truncated_increase, True),
        share_drift("empty", window.empty_mask(), 0.0, params.max_empty_share, False),
        oos_drift(window.out_of_scope(), reference.meta.get("out_of_scope_share"),
                  params.max_oos_increase),
    ]
    alarms = [r.name for r in results if r.drifted and r.name in params.alarm_on]
    report.update(status=DRIFT if alarms else OK, alarms=alarms,
                  detectors=[r.as_dict() for r in results],
                  message=(f"drift: {', '.join(alarms)}" if alarms else "no drift detected"))
    sample = labelling_sample(frame, win_conf, emb_rows, witness, win_emb is not None,
                              params.labelling_sample)
    return report, sample


def labelling_sample(frame: pd.DataFrame, confidence: Any, emb_rows: Any, witness: Any,
                     has_emb: bool, size: int) -> pd.DataFrame | None:
    """Half the most uncertain predictions, half the rows the MMD witness finds most unlike the
    reference; the labelled rows go back through the normal ingest (docs/monitoring.md)."""
    import numpy as np
    import pandas as pd

    if size <= 0 or frame.empty:
        return None
    k = size // 2 if witness is not None else size
    uncertain = list(np.argsort(confidence, kind="stable")[:k])
    drifted: list[int] = []
    if witness is not None:
        # witness rows index the embedding-bearing rows; map them back to the frame's rows
        bearing = np.flatnonzero(frame["embedding"].map(lambda e: e is not None and len(e) > 0))
        order = np.argsort(-witness, kind="stable")
        chosen = set(uncertain)
        for j in order:
            row = int(bearing[emb_rows[j]]) if has_emb else int(j)
            if row not in chosen:
                drifted.append(row)
                chosen.add(row)
            if len(drifted) >= size - k:
                break
    rows = uncertain + drifted
    cols = [c for c in ("ts", "request_id", "id", "text", "text_sha256", "label", "confidence",
                        "out_of_scope", "model_version") if c in frame]
    out = frame.iloc[rows][cols].reset_index(drop=True)
    out.insert(0, "reason", ["uncertain"] * len(uncertain) + ["drifted"] * len(drifted))
    return pd.DataFrame(out)
