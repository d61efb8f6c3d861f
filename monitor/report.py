"""The window's report: markdown + PNG under reports/monitoring/, metrics/monitor.json, history.

The PNG shows reference vs window (predicted-label mix, max-probability histogram, token counts)
and the drift scores of the past windows over time (from the history file, one line per window;
with fewer than two scored windows the panel says so instead of drawing one point).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages import artifacts
from stages.common import get_logger
from stages.io import write_csv, write_json, write_text
from stages.plots import save_png
from stages.report_format import md_table, num

if TYPE_CHECKING:
    import pandas as pd

    from monitor.log import Window
    from monitor.reference import Reference

log = get_logger(__name__)

HISTORY_KEEP = 24 * 90  # hourly windows kept in the history: 90 days
SIG4 = ".4g"  # drift statistics and p-values span decades: 4 significant digits, not 4 decimals
DRIFT_PANEL_WINDOWS = 72  # windows in the drift-over-time panel: three days of hourly windows


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping a damaged line in %s", path)
    return out


def history_entry(report: dict[str, Any]) -> dict[str, Any]:
    scores = {d["name"]: {"statistic": d["statistic"], "p_value": d["p_value"],
                          "drifted": d["drifted"]} for d in report.get("detectors", [])}
    return {"window": report["window"], "end": report["end"], "status": report["status"],
            "predictions": report["predictions"], "alarms": report["alarms"],
            "model_sha256": report["reference"]["model_sha256"],
            "event_emitted": report.get("event_emitted", False), "scores": scores}


def append_history(path: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Add (or replace, for a re-run window) this window's line; returns the new history."""
    entries = [h for h in read_history(path) if h.get("window") != report["window"]]
    entries = sorted([*entries, history_entry(report)], key=lambda h: h["end"])[-HISTORY_KEEP:]
    write_text(path, "".join(json.dumps(h) + "\n" for h in entries))
    return entries


def markdown(report: dict[str, Any], png_name: str | None) -> str:
    """The window's report as markdown (also the Prefect artifact)."""
    status = report["status"].upper()
    lines = [f"# Monitoring window {report['start']} .. {report['end']}", "",
             f"**{status}**: {report['message']}", "",
             f"- predictions: {report['predictions']} (from {report['files']} log file(s); "
             f"median of previous windows: {num(report['volume']['median_previous'], SIG4)})",
             f"- reference: {report['reference']['rows']} test rows of the champion "
             f"(accuracy {num(report['reference']['accuracy'], SIG4)}, calibrated estimate "
             f"{num(report['reference']['estimated_accuracy'], SIG4)})",
             f"- raw text in the log: {'yes' if report['text_logged'] else 'no (hash-only)'}"]
    if report.get("model_versions"):
        lines.append(f"- model versions in the window: {report['model_versions']}")
    for skipped in report["skipped_files"]:
        lines.append(f"- **skipped unreadable log file** `{skipped['path']}`: {skipped['error']}")
    if report.get("event"):
        lines.append(f"- event: {report['event']}")
    if report["detectors"]:
        rows = []
        for d in report["detectors"]:
            fired = d["status"] if d["status"] != "ok" else ("**yes**" if d["drifted"] else "no")
            alarm = "yes" if d["name"] in report["params"]["alarm_on"] else "no (reported)"
            rows.append([d["name"], *(num(d[k], SIG4) for k in ("statistic", "p_value", "threshold")),
                         fired, alarm])
        lines += ["", *md_table(["detector", "statistic", "p-value", "threshold", "fired", "alarms"],
                                rows, "lrrrcc")]
        lines += ["", "Statistics: label = JS divergence of predicted-label mix (chi-square "
                  "p-value); confidence, length = KS D; embedding = MMD²; accuracy = estimated "
                  "(CBPE) accuracy; truncated, empty, out_of_scope = share of the window."]
    if png_name:
        lines += ["", f"![reference vs window]({png_name})"]
    return "\n".join(lines) + "\n"


def plot(reference: Reference, window: Window, history: list[dict[str, Any]], out: Path,
         alpha: float) -> None:
    """Reference vs window distributions, and the drift scores over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np


    labels = reference.labels
    ref_probs, win_probs = reference.probs(), window.probs()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    x = np.arange(len(labels))
    ref_share = np.bincount(ref_probs.argmax(1), minlength=len(labels)) / len(ref_probs)
    win_share = np.bincount(win_probs.argmax(1), minlength=len(labels)) / len(win_probs)
    ax.bar(x - 0.2, ref_share, 0.4, label="reference")
    ax.bar(x + 0.2, win_share, 0.4, label="window")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_title("predicted-label share")
    ax.legend()
    ax = axes[0, 1]
    bins = np.linspace(0, 1, 21)
    ax.hist(ref_probs.max(1), bins, alpha=0.5, density=True, label="reference")
    ax.hist(win_probs.max(1), bins, alpha=0.5, density=True, label="window")
    ax.set_title("max probability")
    ax.legend()
    ax = axes[1, 0]
    tokens = np.concatenate([reference.table["n_tokens"], window.frame["n_tokens"]])
    bins = np.linspace(0, max(int(tokens.max()), 2), 30)
    ax.hist(reference.table["n_tokens"], bins, alpha=0.5, density=True, label="reference")
    ax.hist(window.frame["n_tokens"], bins, alpha=0.5, density=True, label="window")
    ax.set_title("tokens per text")
    ax.legend()
    plot_drift_over_time(axes[1, 1], history, alpha)
    fig.suptitle(f"window {window.name}: {len(window)} predictions")
    fig.tight_layout()
    save_png(fig, out, dpi=80)


def plot_drift_over_time(ax: Any, history: list[dict[str, Any]], alpha: float) -> bool:
    """The recent windows' drift scores; False, with a note in the panel, under two windows."""
    import numpy as np

    recent = [h for h in history if h.get("scores")][-DRIFT_PANEL_WINDOWS:]
    ax.set_title("drift over time: -log10 p-value per window")
    if len(recent) < 2:
        # one point on an empty axis reads as a measurement; a trend needs two windows
        ax.text(0.5, 0.5, f"{len(recent)} scored window(s) so far:\n"
                "drift over time is drawn from 2 windows on", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return False
    for name in ("label", "confidence", "length", "embedding", "novelty"):
        p = [h["scores"].get(name, {}).get("p_value") for h in recent]
        if any(v is not None for v in p):
            ax.plot(range(len(p)), [-np.log10(max(v, 1e-12)) if v is not None else np.nan
                                    for v in p], marker=".", label=name)
    ax.axhline(-np.log10(alpha), color="red", ls="--", lw=1, label="alarm threshold")
    ax.set_xlabel("window (oldest to newest)")
    ax.legend(fontsize=7)
    return True


def write_outputs(root: Path, report: dict[str, Any], reference: Reference, window: Window,
                  sample: pd.DataFrame | None) -> dict[str, Path]:
    """reports/monitoring/<window>.md/.png(/.labelling.csv), metrics/monitor.json, history."""
    reports = root / artifacts.MONITORING_REPORTS_DIR
    history = append_history(root / artifacts.MONITOR_HISTORY, report)
    paths = {"markdown": reports / f"{report['window']}.md", "metrics": root / artifacts.MONITOR_METRICS}
    png = None
    if report["predictions"]:
        paths["png"] = reports / f"{report['window']}.png"
        plot(reference, window, history, paths["png"], report["params"]["alpha"])
        png = paths["png"].name
    if sample is not None and len(sample):
        paths["labelling"] = reports / f"{report['window']}.labelling.csv"
        write_csv(paths["labelling"], sample)
        report["labelling_sample"] = str(paths["labelling"])
    write_text(paths["markdown"], markdown(report, png))
    write_json(paths["metrics"], report)
    log.info("window %s: %s; wrote %s", report["window"], report["message"],
             ", ".join(str(p) for p in paths.values()))
    return paths
