"""promote: make the gated candidate the new champion (a command, never a DVC stage).

    python -m stages.promote                          # only after a passed, current gate
    python -m stages.promote --force --reason TEXT    # overrides a failed gate, on the record

Not a DVC stage because it writes what evaluate reads (models/champion.json): as a stage it would
close a cycle. Steps, each refusing with a message when something is off:

1. metrics/gate.json says passed (or --force with a reason), and it is current: it was computed
   from the metrics/eval.json and predictions in the workspace, and `dvc status --with-deps gate`
   (``evaluate`` with --force, as a failed gate is never recorded in dvc.lock) is clean;
2. models/checkpoint is copied into a temporary sibling of models/champion with metrics.json and
   data_profile.json beside it, then swapped in (the old champion is kept aside until the end);
   the checkpoint's training_data.json (hashes of the texts it trained and was selected on) goes
   with it, so later evaluations compare only on test rows the champion never saw;
3. `dvc add models/champion`, models/champion.json (the pointer evaluate depends on) and a line in
   reports/gate_history.jsonl, then one `git commit` of exactly those files.

If any step fails, the previous champion directory, its .dvc file, the pointer, .gitignore and the
history are put back as they were: a half-done promotion never replaces a working champion.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stages.common import StageError, get_logger, run_cli
from stages.data import TRAINING_DATA_FILE
from stages.io import read_json, sha256_file, write_json, write_text

log = get_logger(__name__)

CHECKPOINT = Path("models/checkpoint")
CHAMPION = Path("models/champion")
CHAMPION_DVC = Path("models/champion.dvc")
POINTER = Path("models/champion.json")
MODELS_GITIGNORE = Path("models/.gitignore")
HISTORY = Path("reports/gate_history.jsonl")
GATE_JSON = Path("metrics/gate.json")
EVAL_JSON = Path("metrics/eval.json")
PREDICTIONS = Path("data/predictions/test.parquet")
TEXTS = Path("data/raw/texts.parquet")
LABELS = Path("data/labels/labels.parquet")
# files a promotion changes (and commits); restored byte for byte if it fails half way
TRACKED = (CHAMPION_DVC, POINTER, MODELS_GITIGNORE, HISTORY)


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageError(f"{what} failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}",
                         where=" ".join(cmd[:4]) + (" ..." if len(cmd) > 4 else ""))
    return proc


def dvc(*args: str, what: str) -> subprocess.CompletedProcess:
    """The DVC of this Python environment (the one the pipeline runs with)."""
    return _run([sys.executable, "-m", "dvc", *args], what)


def git_identity() -> str:
    """``Name <email>`` as git will record it (config or GIT_AUTHOR_* environment)."""
    proc = subprocess.run(["git", "var", "GIT_AUTHOR_IDENT"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageError("git has no user identity, so the promotion cannot be committed",
                         where="git config", fix="git config user.name 'Your Name' && "
                                                 "git config user.email you@example.com")
    return proc.stdout.strip().rsplit(" ", 2)[0]


def head_commit() -> str | None:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def check_gate(gate: dict[str, Any], force: bool, reason: str | None) -> None:
    """Refuse a failed gate unless forced, and a force without a reason."""
    if force and not (reason or "").strip():
        raise StageError("--force needs --reason TEXT: a forced promotion is recorded with why",
                         fix="python -m stages.promote --force --reason 'hotfix for ...'")
    if gate.get("passed") is True:
        return
    failed = ", ".join(gate.get("failed") or []) or "unknown checks"
    if not force:
        raise StageError(f"the gate FAILED ({failed}): refusing to promote this candidate",
                         where=f"{GATE_JSON}, reports/gate.md",
                         fix="fix the model or data and `dvc repro`; to override on the record: "
                             "python -m stages.promote --force --reason TEXT")
    log.warning("FORCING promotion despite a failed gate (%s): %s", failed, reason)


def check_current(gate: dict[str, Any], force: bool) -> None:
    """gate.json must describe the workspace's evaluation, and the pipeline must be up to date."""
    inputs = gate.get("inputs") or {}
    for path, key in ((EVAL_JSON, "eval_json_sha256"), (PREDICTIONS, "predictions_sha256")):
        if not path.is_file() or inputs.get(key) != sha256_file(path):
            raise StageError(f"{GATE_JSON} was not computed from the current {path}",
                             where=str(GATE_JSON), fix="run `dvc repro gate` and check the report")
    # a failed gate is never recorded in dvc.lock, so --force can only ask for evaluate
    target = "evaluate" if force else "gate"
    proc = dvc("status", "--with-deps", "--json", target, what=f"dvc status {target}")
    changed = json.loads(proc.stdout or "{}")
    if changed:
        raise StageError(f"the pipeline is not up to date for '{target}': changed "
                         f"{sorted(changed)}; the gate result may describe another model",
                         where="dvc status --with-deps " + target,
                         fix="run `dvc repro` (then promote if the gate passes)")


def headline(ev: dict[str, Any]) -> dict[str, Any]:
    c = ev["candidate"]
    return {"macro_f1": c["macro_f1"], "accuracy": c["accuracy"],
            "weighted_f1": c.get("weighted_f1"), "test_rows": ev.get("test_rows", c.get("n"))}


def data_profile() -> dict[str, Any]:
    """The training-data profile validate will compare future data with (stages.validate)."""
    import pandas as pd

    from stages.validate import data_profile as profile

    for path in (TEXTS, LABELS):
        if not path.is_file():
            raise StageError("ingested data not found", where=str(path), fix="run `dvc repro`")
    return profile(pd.read_parquet(TEXTS), pd.read_parquet(LABELS))


def build_champion(dest: Path, ev: dict[str, Any], profile: dict[str, Any]) -> None:
    """The checkpoint, plus what the champion is judged and drift-checked by, in ``dest``."""
    if not (CHECKPOINT / "config.json").is_file():
        raise StageError("no candidate checkpoint to promote", where=str(CHECKPOINT),
                         fix="run `dvc repro train`")
    if not (CHECKPOINT / TRAINING_DATA_FILE).is_file():
        # without it, every later evaluation would have to compare on rows the champion memorised
        raise StageError(f"the checkpoint has no {TRAINING_DATA_FILE} (the fingerprint of the "
                         "texts it trained on)", where=str(CHECKPOINT),
                         fix="re-train with this version (`dvc repro`), then promote")
    # follows DVC cache links: the champion owns real files, its training-data fingerprint included
    shutil.copytree(CHECKPOINT, dest)
    write_json(dest / "metrics.json", {"test_rows": ev.get("test_rows"), "labels": ev["labels"],
                                       **ev["candidate"]})
    write_json(dest / "data_profile.json", profile)
    from monitor.reference import build_champion_reference  # the drift monitor's reference
    build_champion_reference(dest)


def commit_message(record: dict[str, Any], gate: dict[str, Any]) -> str:
    m = record["metrics"]
    numbers = f"macro-F1 {m['macro_f1']:.4f}, accuracy {m['accuracy']:.4f}"
    if not record["forced"]:
        return f"promote: new champion ({numbers}; gate passed)"
    failed = ", ".join(gate.get("failed") or []) or "none"
    verdict = "passed" if gate.get("passed") else "FAILED"
    return (f"promote --force: new champion ({numbers}; gate {verdict})\n\n"
            f"Forced by {record['forced_by']}.\nFailed checks: {failed}.\n"
            f"Reason: {record['reason']}\n")


def install(ev: dict[str, Any], gate: dict[str, Any], profile: dict[str, Any], force: bool,
            reason: str | None, identity: str) -> dict[str, Any]:
    """Swap the new champion in, dvc add, write pointer and history, commit; or undo it all."""
    saved = {p: (p.read_bytes() if p.is_file() else None) for p in TRACKED}
    previous = read_json(POINTER).get("champion") if POINTER.is_file() else None
    record = {"path": CHAMPION.as_posix(),
              "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "commit": head_commit(), "forced": force,
              "forced_by": identity if force else None,
              "reason": reason if force else None,
              "gate_passed": bool(gate.get("passed")), "metrics": headline(ev)}
    CHAMPION.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".champion.", suffix=".tmp", dir=CHAMPION.parent))
    backup = work / "previous"
    swapped = False
    staged: list[str] = []
    try:
        log.info("copying %s into a new champion directory", CHECKPOINT)
        build_champion(work / "new", ev, profile)
        if CHAMPION.exists():
            os.replace(CHAMPION, backup)
        swapped = True
        os.replace(work / "new", CHAMPION)
        log.info("dvc add %s", CHAMPION)
        dvc("add", CHAMPION.as_posix(), what="dvc add models/champion")
        write_json(POINTER, {"champion": record})
        history = saved[HISTORY].decode("utf-8") if saved[HISTORY] else ""
        entry = {**record, "failed_checks": gate.get("failed") or [],
                 "previous": previous and {"promoted_at": previous.get("promoted_at"),
                                           "metrics": previous.get("metrics")}}
        write_text(HISTORY, history + json.dumps(entry) + "\n")
        paths = [p.as_posix() for p in TRACKED if p.is_file()]
        staged = paths
        _run(["git", "add", "--", *paths], "git add")
        _run(["git", "commit", "-q", "-m", commit_message(record, gate), "--", *paths],
             "git commit")
    except BaseException:
        log.error("promotion failed: restoring the previous champion")
        _rollback(saved, backup if swapped else None, staged)
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    log.info("promoted: %s (commit %s)", commit_message(record, gate).splitlines()[0],
             head_commit())
    return record


def _rollback(saved: dict[Path, bytes | None], backup: Path | None, staged: list[str]) -> None:
    if backup is not None:  # the swap happened: the new dir goes, the old one comes back
        if CHAMPION.is_dir():
            shutil.rmtree(CHAMPION)
        if backup.exists():
            os.replace(backup, CHAMPION)
    for path, content in saved.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)
    if staged:  # un-stage what this run staged; the index goes back to HEAD for these paths
        subprocess.run(["git", "restore", "--staged", "--", *staged], capture_output=True)


def promote(force: bool = False, reason: str | None = None) -> dict[str, Any]:
    """Check, then install the candidate as champion; returns the new pointer record."""
    if not GATE_JSON.is_file():
        raise StageError("no gate result to promote on", where=str(GATE_JSON),
                         fix="run `dvc repro` (the gate stage writes it)")
    gate = read_json(GATE_JSON)
    check_gate(gate, force, reason)
    identity = git_identity()
    log.info("checking that %s is current (dvc status)", GATE_JSON)
    check_current(gate, force)
    ev = read_json(EVAL_JSON)
    log.info("profiling the training data for the champion")
    profile = data_profile()
    return install(ev, gate, profile, force, reason, identity)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.promote", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true",
                        help="promote even though the gate failed (recorded with who and why)")
    parser.add_argument("--reason", help="why (required with --force)")
    args = parser.parse_args()
    promote(args.force, args.reason)


if __name__ == "__main__":
    run_cli(main)
