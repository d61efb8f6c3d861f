"""promote: make the gated candidate the new champion (a command, never a DVC stage).

    python -m commands.promote                        # only after a passed, current gate
    python -m commands.promote --force --reason TEXT  # overrides a failed gate, on the record

Checks the gate is passed and current, swaps models/checkpoint (and its ONNX export) into
models/champion, runs `dvc add`, updates models/champion.json and commits it with the run's results.
If any step fails, the previous champion is put back as it was.
More: docs/gates.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stages import artifacts
from stages.artifacts import CHAMPION_DIR as CHAMPION
from stages.artifacts import (
    CHAMPION_DVC,
    CHAMPION_METRICS,
    GATE_REPORT,
    MODELS_GITIGNORE,
    PREDICTIONS,
    PROFILE_FILE,
    TRAINING_DATA_FILE,
    profile_of_ingested_data,
    read_champion_pointer,
    write_champion_pointer,
)
from stages.artifacts import CHAMPION_POINTER as POINTER
from stages.artifacts import CHECKPOINT_DIR as CHECKPOINT
from stages.artifacts import EVAL_METRICS as EVAL_JSON
from stages.artifacts import GATE_HISTORY as HISTORY
from stages.artifacts import GATE_METRICS as GATE_JSON
from stages.common import StageError, get_logger, run_cli
from stages.io import read_json, sha256_file, write_json, write_text
from stages.vcs import dvc, git, git_identity, git_try, head_commit, run

log = get_logger(__name__)

# files a promotion changes (and commits); restored byte for byte if it fails half way
TRACKED = (CHAMPION_DVC, POINTER, MODELS_GITIGNORE, HISTORY)


def candidate_is_champion(root: Path = Path(".")) -> bool:
    """The checkpoint is the champion's own: every checkpoint file is in the champion, byte for
    byte (a retrain on unchanged data, params and code). Such a candidate is never promoted."""
    record = read_champion_pointer(root / POINTER)
    checkpoint = root / CHECKPOINT
    if record is None or not (checkpoint / "config.json").is_file():
        return False
    champion = root / (record.get("path") or CHAMPION)
    files = [f for f in checkpoint.iterdir() if f.is_file()]
    return all((champion / f.name).is_file()
               and sha256_file(champion / f.name) == sha256_file(f) for f in files)


def check_gate(gate: dict[str, Any], force: bool, reason: str | None) -> None:
    """Refuse a failed gate unless forced, and a force without a reason."""
    if force and not (reason or "").strip():
        raise StageError("--force needs --reason TEXT: a forced promotion is recorded with why",
                         fix="python -m commands.promote --force --reason 'hotfix for ...'")
    if gate.get("passed") is True:
        return
    failed = ", ".join(gate.get("failed") or []) or "unknown checks"
    if not force:
        raise StageError(f"the gate FAILED ({failed}): refusing to promote this candidate",
                         where=f"{GATE_JSON}, {GATE_REPORT}",
                         fix="fix the model or data and `dvc repro`; to override on the record: "
                             "python -m commands.promote --force --reason TEXT")
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
    changed = json.loads(dvc("status", "--with-deps", "--json", target,
                             what=f"dvc status {target}") or "{}")
    if changed:
        raise StageError(f"the pipeline is not up to date for '{target}': changed "
                         f"{sorted(changed)}; the gate result may describe another model",
                         where="dvc status --with-deps " + target,
                         fix="run `dvc repro` (then promote if the gate passes)")
    if not (artifacts.ONNX_DIR / artifacts.ONNX_FP32).is_file():
        log.warning("no ONNX export in %s: the champion will have none and the service cannot "
                    "serve it (run `dvc repro quantize` before promoting)", artifacts.ONNX_DIR)
        return
    # the export goes into the champion: it must be of this checkpoint, and int8 gated
    changed = json.loads(dvc("status", "--json", "export", "quantize",
                             what="dvc status export quantize") or "{}")
    if changed:
        raise StageError(f"the ONNX export in {artifacts.ONNX_DIR} is not up to date "
                         f"({sorted(changed)} changed): it may be another model's",
                         where="dvc status export quantize",
                         fix="run `dvc repro quantize` (after a failed gate: `dvc repro "
                             "--single-item export quantize`), then promote")


def check_code_committed() -> None:
    """Refuse when a file the run depends on (per dvc.lock), or dvc.yaml, differs from HEAD:
    the promote commit would then record a dvc.lock that no commit can reproduce."""
    import yaml

    lock_file = Path("dvc.lock")
    if not lock_file.is_file():
        return
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    deps = {dep["path"] for stage in (lock.get("stages") or {}).values()
            for dep in stage.get("deps") or [] if "path" in dep}
    results = {p.as_posix() for p in artifacts.RUN_RESULT_PATHS}
    code = sorted(p for p in deps | {"dvc.yaml"}
                  if p not in results and not p.startswith(tuple(r + "/" for r in results)))
    changed = (git("ls-files", "--modified", "--others", "--exclude-standard", "--", *code,
                   what="git ls-files") + "\n"
               + git("diff", "--cached", "--name-only", "--", *code, what="git diff --cached"))
    dirty = sorted({line for line in changed.splitlines() if line.strip()})
    if dirty:
        shown = ", ".join(dirty[:8]) + (f" and {len(dirty) - 8} more" if len(dirty) > 8 else "")
        raise StageError(f"the run used files that are not committed: {shown}; the champion's "
                         "commit would record a dvc.lock that no commit reproduces",
                         where="git status",
                         fix=f"commit them first (git add {' '.join(dirty[:8])} && git commit -m "
                             "'...'), then promote; promote commits dvc.lock, params and "
                             "metrics with the champion")


def run_results() -> list[str]:
    """The run's results that live in git (dvc.lock, params, metrics, plots, reports)."""
    return [p.as_posix() for p in artifacts.RUN_RESULT_PATHS if p.exists()]


def headline(ev: dict[str, Any]) -> dict[str, Any]:
    c = ev["candidate"]
    return {"macro_f1": c["macro_f1"], "accuracy": c["accuracy"],
            "weighted_f1": c.get("weighted_f1"), "test_rows": ev.get("test_rows", c.get("n"))}


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
    write_json(dest / CHAMPION_METRICS, {"test_rows": ev.get("test_rows"), "labels": ev["labels"],
                                       **ev["candidate"]})
    write_json(dest / PROFILE_FILE, profile)
    if (artifacts.ONNX_DIR / artifacts.ONNX_FP32).is_file():
        copy_onnx_export(artifacts.ONNX_DIR, dest / artifacts.CHAMPION_ONNX)
    from monitor.reference import build_champion_reference  # the drift monitor's reference

    build_champion_reference(dest)


REFERENCE_ROWS = 256  # test texts whose predictions the champion carries (the reload check)


def copy_onnx_export(src: Path, dest: Path) -> None:
    """The exported model files, tokenizer, labels and out-of-scope detector, and their
    predictions on test texts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stages.data import load_split, text_fingerprint
    from stages.metrics import softmax
    from stages.onnx_session import encode, load_onnx_model, run_logits

    dest.mkdir(parents=True)
    for name in (artifacts.ONNX_FP32, artifacts.ONNX_INT8, artifacts.ONNX_FP16,
                 artifacts.LABELS_FILE, artifacts.OOS_JSON, artifacts.OOS_ARRAYS):
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    shutil.copytree(src / artifacts.TOKENIZER_DIR, dest / artifacts.TOKENIZER_DIR)
    test = load_split("test").head(REFERENCE_ROWS)
    texts = test["text"].astype(str).tolist()
    columns = {"id": pa.array(test["id"].astype(str).tolist() if "id" in test else
                              [str(i) for i in range(len(texts))]),
               "text": pa.array(texts),
               "text_fingerprint": pa.array([text_fingerprint(t) for t in texts])}
    for precision in ("fp32", "int8"):  # fp16 needs a GPU: the service checks it against fp32
        path = dest / artifacts.ONNX_PRECISIONS[precision]
        if path.is_file():
            model = load_onnx_model(path, device="cpu")
            # one text per call, as the service's reload check scores them
            probs = softmax(run_logits(model, encode(model, texts), batch_size=1))
            columns[f"probs_{precision}"] = pa.array(list(probs.astype("float32")),
                                                     type=pa.list_(pa.float32()))
    pq.write_table(pa.table(columns), dest / artifacts.CHAMPION_REFERENCE)
    log.info("champion ONNX export: %s, %d reference predictions",
             sorted(p.name for p in dest.iterdir()), len(texts))


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
    previous = read_champion_pointer(POINTER)
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
        write_champion_pointer(record, POINTER)
        history = saved[HISTORY].decode("utf-8") if saved[HISTORY] else ""
        entry = {**record, "failed_checks": gate.get("failed") or [],
                 "previous": previous and {"promoted_at": previous.get("promoted_at"),
                                           "metrics": previous.get("metrics")}}
        write_text(HISTORY, history + json.dumps(entry) + "\n")
        paths = [p.as_posix() for p in TRACKED if p.is_file()] + run_results()
        staged = paths
        run(["git", "add", "-A", "--", *paths], "git add")
        run(["git", "commit", "-q", "-m", commit_message(record, gate), "--", *paths],
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
        git_try("restore", "--staged", "--", *staged)


def promote(force: bool = False, reason: str | None = None) -> dict[str, Any]:
    """Check, then install the candidate as champion; returns the new pointer record."""
    if not GATE_JSON.is_file():
        raise StageError("no gate result to promote on", where=str(GATE_JSON),
                         fix="run `dvc repro` (the gate stage writes it)")
    if candidate_is_champion():
        raise StageError("the candidate is the champion already (its checkpoint files are the "
                         "champion's, byte for byte): nothing to promote",
                         where=f"{CHECKPOINT} vs {CHAMPION}",
                         fix="retrain on new data, params or code first (`dvc repro`)")
    gate = read_json(GATE_JSON)
    check_gate(gate, force, reason)
    identity = git_identity()
    log.info("checking that %s is current (dvc status)", GATE_JSON)
    check_current(gate, force)
    check_code_committed()
    ev = read_json(EVAL_JSON)
    log.info("profiling the training data for the champion")
    profile = profile_of_ingested_data()
    return install(ev, gate, profile, force, reason, identity)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m commands.promote", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true",
                        help="promote even though the gate failed (recorded with who and why)")
    parser.add_argument("--reason", help="why (required with --force)")
    args = parser.parse_args()
    promote(args.force, args.reason)


if __name__ == "__main__":
    run_cli(main)
