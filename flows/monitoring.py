"""monitor: the hourly Prefect flow that compares production predictions with the champion.

    python -m flows.monitoring [--end 2026-12-01T14:00Z] [--hours 24] [--log-dir DIR] [--reference DIR]

Runs monitor/'s detectors on one window of the prediction log, writes the window's report and
metrics, and emits ``retrainer.drift.detected`` on an alarm (at most once per cooldown), which
triggers the ``label-on-drift`` deployment: a labelling batch chosen from the same window (drift
is answered with new labels, not a retrain on unchanged data). Not named monitor.py: it would
shadow the package.
More: docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.refusal import refused
from stages import artifacts
from stages.common import StageError, load_params, run_cli

DRIFT_EVENT = "retrainer.drift.detected"


def reference_dir(repo: Path, explicit: str | None) -> Path:
    """An explicit reference, monitor.reference, or the champion's monitor_reference/."""
    if explicit:
        return repo / explicit
    record = artifacts.read_champion_pointer(repo / artifacts.CHAMPION_POINTER)
    if record is None:
        raise StageError("there is no champion yet, so nothing to monitor",
                         where=str(repo / artifacts.CHAMPION_POINTER),
                         fix="promote a model first, or set monitor.reference")
    return repo / (record.get("path") or artifacts.CHAMPION_DIR) / artifacts.MONITOR_REFERENCE


def recent_event(history: list[dict[str, Any]], model_sha: str, end: datetime,
                 cooldown_hours: int) -> dict[str, Any] | None:
    """The last drift event for this champion within the cooldown, if any."""
    from monitor.log import as_utc

    for h in reversed(history):
        if (h.get("event_emitted") and h.get("model_sha256") == model_sha
                and end - as_utc(h["end"]) < timedelta(hours=cooldown_hours)):
            return h
    return None


def emit_drift(repo: Path, report: dict[str, Any]) -> str | None:
    from prefect.events import emit_event

    scores = {d["name"]: {"statistic": d["statistic"], "p_value": d["p_value"],
                          "threshold": d["threshold"], "drifted": d["drifted"]}
              for d in report["detectors"]}
    event = emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": f"retrainer.monitor.{repo.name}",
                  "prefect.resource.name": repo.name},
        payload={"window": report["window"], "start": report["start"], "end": report["end"],
                 "hours": round((datetime.fromisoformat(report["end"])
                                 - datetime.fromisoformat(report["start"])).total_seconds() / 3600),
                 "alarms": report["alarms"],
                 "predictions": report["predictions"], "scores": scores,
                 "model_sha256": report["reference"]["model_sha256"]})
    return str(event.id) if event else None


@task(name="read window", retries=2, retry_delay_seconds=10)
def read_window_task(log_dir: Path, start: datetime, end: datetime, n_labels: int) -> Any:
    from monitor.log import read_window

    return read_window(log_dir, start, end, n_labels)


@flow(name="monitor")
def monitor(repo_dir: str | None = None, end: str | None = None, hours: int | None = None,
            log_dir: str | None = None, reference: str | None = None) -> Any:
    """One monitoring window; emits retrainer.drift.detected when an alarm detector fires.

    repo_dir: the checkout (default: $RETRAINER_REPO, else the working directory).
    end: the window's end (ISO, UTC); default the start of the current hour.
    hours / log_dir / reference: override monitor.window_hours / .log_dir / .reference.
    """
    logger = get_run_logger()
    repo = Path(repo_dir or os.environ.get("RETRAINER_REPO") or os.getcwd()).resolve()
    try:
        return _monitor(repo, end, hours, log_dir, reference, logger)
    except StageError as exc:
        return refused(exc, "monitor-failure", "Monitoring failed")


def _monitor(repo: Path, end: str | None, hours: int | None, log_dir: str | None,
             reference: str | None, logger: Any) -> dict[str, Any]:
    from monitor.check import DRIFT, check_window
    from monitor.detectors import MonitorParams
    from monitor.log import as_utc
    from monitor.reference import load_reference
    from monitor.report import read_history, write_outputs

    params = load_params("monitor", MonitorParams, repo / "params.yaml")
    end_ts = as_utc(end) if end else datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start_ts = end_ts - timedelta(hours=hours or params.window_hours)
    ref = load_reference(reference_dir(repo, reference or params.reference))
    history = read_history(repo / artifacts.MONITOR_HISTORY)
    window = read_window_task(repo / (log_dir or params.log_dir), start_ts, end_ts,
                              len(ref.labels))
    report, sample = check_window(ref, window, params, history)
    if report["status"] == DRIFT:
        previous = recent_event(history, report["reference"]["model_sha256"], end_ts,
                                params.cooldown_hours)
        if previous:
            report["event"] = (f"not emitted: {DRIFT_EVENT} was already emitted for this champion "
                               f"in window {previous['window']} (monitor.cooldown_hours)")
        else:
            event_id = emit_drift(repo, report)
            report["event_emitted"] = True
            report["event"] = f"{DRIFT_EVENT} emitted (id {event_id})"
        logger.warning("DRIFT in %s: %s; %s", report["window"], ", ".join(report["alarms"]),
                       report["event"])
    else:
        logger.info("%s: %s", report["window"], report["message"])
    paths = write_outputs(repo, report, ref, window, sample)
    create_markdown_artifact(key="monitor-window",
                             markdown=paths["markdown"].read_text(encoding="utf-8"),
                             description=f"{report['window']}: {report['message']}")
    return {k: report[k] for k in ("window", "status", "alarms", "predictions", "message")
            } | {"event_emitted": report.get("event_emitted", False),
                 "skipped_files": len(report["skipped_files"])}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.monitoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo-dir", help="checkout to run in (default: current directory)")
    parser.add_argument("--end", help="window end, ISO UTC (default: start of the current hour)")
    parser.add_argument("--hours", type=int, help="window length (default monitor.window_hours)")
    parser.add_argument("--log-dir", help="prediction log (default monitor.log_dir)")
    parser.add_argument("--reference", help="reference directory (default: the champion's)")
    args = parser.parse_args()
    state = monitor(repo_dir=args.repo_dir, end=args.end, hours=args.hours,
                    log_dir=args.log_dir, reference=args.reference, return_state=True)
    result = state.result(raise_on_failure=False) if state.is_completed() else None
    print(f"monitor: {state.name}: {result['message'] if result else state.message or ''}")
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    run_cli(main)
