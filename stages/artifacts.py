"""The artifact contract: every path the pipeline reads or writes, the champion, the data profile.

Where does X live? Here, and only here: everything imports these names instead of spelling paths,
and dvc.yaml declares the same paths (a test checks the two agree). Paths are relative to the
repository root. The champion is ``models/champion/`` (DVC-tracked), pointed to by
``models/champion.json``. More: docs/gates.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.common import StageError

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------- data
RAW_TEXTS = Path("data/raw/texts.parquet")
LABELS = Path("data/labels/labels.parquet")
SPLITS_DIR = Path("data/splits")
SPLIT_NAMES = ("train", "val", "test")
TEST_SET_DIR = Path("data/test_set")  # where a golden test set (split.test_set) must live
PREDICTIONS = Path("data/predictions/test.parquet")
REFERENCE_PROFILE = Path("data/reference_profile.json")
LABEL_AUDIT_SUSPECTS = Path("data/label_audit/suspects.parquet")  # the rows a person should review
LABEL_AUDIT_EXCLUDED = Path("data/label_audit/excluded.json")     # what train leaves out

# ---------------------------------------------------------------- models
CHECKPOINT_DIR = Path("models/checkpoint")
TRAIN_STATE_DIR = Path("models/train_state")
ONNX_DIR = Path("models/onnx")
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
ONNX_FP16 = "model.fp16.onnx"
TOKENIZER_DIR = "tokenizer"
LABELS_FILE = "labels.json"
MANIFEST_FILE = "manifest.json"
TRAINING_DATA_FILE = "training_data.json"  # inside a checkpoint, and so inside the champion
# the out-of-scope detector (stages/oos.py): oos.json (method, threshold, label) + oos.npz (arrays);
# fitted into OOS_DIR, copied by export into ONNX_DIR, and so into the champion's onnx/
OOS_DIR = Path("models/oos")
OOS_JSON = "oos.json"
OOS_ARRAYS = "oos.npz"

CHAMPION_DIR = Path("models/champion")
CHAMPION_DVC = Path("models/champion.dvc")
CHAMPION_POINTER = Path("models/champion.json")
CHAMPION_ONNX = "onnx"  # the champion's ONNX export, inside CHAMPION_DIR
CHAMPION_METRICS = "metrics.json"
PROFILE_FILE = "data_profile.json"
MODELS_GITIGNORE = Path("models/.gitignore")

# ---------------------------------------------------------------- metrics, plots, reports
DATA_METRICS = Path("metrics/data.json")
TRAIN_METRICS = Path("metrics/train.json")
EVAL_METRICS = Path("metrics/eval.json")
GATE_METRICS = Path("metrics/gate.json")
PARITY_METRICS = Path("metrics/parity.json")
QUANTIZE_METRICS = Path("metrics/quantize.json")
EXPORT_METRICS = Path("metrics/export.json")
LABEL_AUDIT_METRICS = Path("metrics/label_audit.json")

TRAIN_STEPS_CSV = Path("plots/train_steps.csv")
TRAIN_EPOCHS_CSV = Path("plots/train_epochs.csv")
CONFUSION_CSV = Path("plots/confusion.csv")
CONFUSION_PNG = Path("plots/confusion.png")
PER_CLASS_CSV = Path("plots/per_class_f1.csv")
LATENCY_CSV = Path("plots/latency.csv")
LATENCY_PNG = Path("plots/latency.png")

RAW_VALIDATION_DIR = Path("reports/validation/raw")
SPLIT_VALIDATION_DIR = Path("reports/validation/splits")
GATE_REPORT = Path("reports/gate.md")
LABEL_AUDIT_MD = Path("reports/label_audit.md")
LABEL_AUDIT_HTML = Path("reports/label_audit.html")
GATE_HISTORY = Path("reports/gate_history.jsonl")
PR_REPORT = Path("reports/pr.md")
# what a run changes that belongs in git: committed with the champion, so the commit that names a
# champion also records the dvc.lock (checkpoint hash), params and metrics that produced it
RUN_RESULT_PATHS = (Path("dvc.lock"), Path("params.yaml"), Path("metrics"), Path("plots"),
                    Path("reports"))


def split_path(name: str) -> Path:
    """``data/splits/<name>.parquet`` for one of :data:`SPLIT_NAMES`."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"unknown split {name!r}; one of {SPLIT_NAMES}")
    return SPLITS_DIR / f"{name}.parquet"


# ---------------------------------------------------------------- the champion


def read_champion_pointer(pointer: Path = CHAMPION_POINTER) -> dict[str, Any] | None:
    """The pointer's record (path, promoted_at, commit, metrics...), or None: no champion yet.

    A missing pointer file and ``{"champion": null}`` both mean "no champion" (a normal first
    run); a pointer that is not valid JSON is an error, never silently "no champion".
    """
    if not pointer.is_file():
        return None
    try:
        data = json.loads(pointer.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StageError(f"the champion pointer is not valid JSON: {exc}", where=str(pointer),
                         fix=f"restore it from git: `git checkout -- {pointer}`") from None
    if not isinstance(data, dict) or "champion" not in data:
        raise StageError('the champion pointer must be {"champion": {...} or null}',
                         where=str(pointer), fix=f"restore it from git: `git checkout -- {pointer}`")
    record = data["champion"]
    if record is not None and not isinstance(record, dict):
        raise StageError("the champion pointer's 'champion' must be a mapping or null",
                         where=str(pointer), fix=f"restore it from git: `git checkout -- {pointer}`")
    return record


def champion_dir(pointer: Path = CHAMPION_POINTER, require: bool = True) -> Path | None:
    """The champion's directory, or None when there is no champion yet.

    With ``require`` the directory must be in the workspace with a checkpoint in it; a pointer
    naming a champion that is not checked out is an error that says how to fetch it.
    """
    record = read_champion_pointer(pointer)
    if record is None:
        return None
    path = Path(record.get("path") or CHAMPION_DIR)
    if require and not (path / "config.json").is_file():
        raise StageError(f"{pointer} names a champion but {path} is not in the workspace",
                         where=str(path), fix=restore_fix(path))
    return path


def _recorded_hash(path: Path) -> str | None:
    """The hash DVC recorded for ``path``: in its .dvc file, else in dvc.lock's outputs."""
    import yaml

    for record, entry in ((Path(f"{path}.dvc"), None), (Path("dvc.lock"), path.as_posix())):
        if not record.is_file():
            continue
        try:
            data = yaml.safe_load(record.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        outs = (data.get("outs") or [] if entry is None else
                [o for stage in (data.get("stages") or {}).values() for o in stage.get("outs") or []
                 if o.get("path") == entry])
        if outs and outs[0].get("md5"):
            return str(outs[0]["md5"])
    return None


def _has_remote() -> bool:
    return any('remote "' in text or "remote =" in text for text in
               (p.read_text(encoding="utf-8") for p in (Path(".dvc/config"), Path(".dvc/config.local"))
                if p.is_file()))


def restore_fix(path: Path) -> str:
    """How to get a DVC-tracked output (the champion, the checkpoint, an export) back into the
    workspace: `dvc checkout` when the local cache has the recorded version, `dvc pull` when a
    remote may, else what re-creates it. A fresh clone without `dvc pull` is the usual cause."""
    owner = CHAMPION_DIR if path.resolve().is_relative_to(CHAMPION_DIR.resolve()) else path
    target = CHAMPION_DVC.as_posix() if owner == CHAMPION_DIR else owner.as_posix()
    md5 = _recorded_hash(owner)
    if md5 is not None and Path(".dvc/cache/files/md5", md5[:2], md5[2:]).exists():
        return f"restore it from the local DVC cache: `dvc checkout {target}`"
    if md5 is not None and _has_remote():
        return (f"it is recorded but not in this workspace (a fresh clone?): `dvc pull {target}` "
                f"fetches it from the DVC remote")
    if owner == CHAMPION_DIR:
        return (f"restore the champion from the DVC cache: `dvc checkout {target}` (or `dvc pull "
                f"{target}` from the DVC remote)")
    return f"re-create it: `dvc checkout {target}` or `dvc repro --force train`"


def champion_onnx_dir(pointer: Path = CHAMPION_POINTER) -> Path | None:
    """The champion's ONNX export (what the service loads), or None when there is no champion."""
    path = champion_dir(pointer)
    if path is None:
        return None
    onnx_dir = path / CHAMPION_ONNX
    if not (onnx_dir / ONNX_FP32).is_file():
        raise StageError(f"the champion has no ONNX export in {onnx_dir}", where=str(onnx_dir),
                         fix="promote a model after `dvc repro` has run export and quantize")
    return onnx_dir


def write_champion_pointer(record: dict[str, Any] | None,
                           pointer: Path = CHAMPION_POINTER) -> None:
    """Write the pointer atomically (promote is its only writer)."""
    from stages.io import write_json

    write_json(pointer, {"champion": record})


# ---------------------------------------------------------------- the data profile

PROFILE_QUANTILES = {"min": 0.0, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95,
                     "max": 1.0}


def labelled_records(texts: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Texts joined to their label (first label row per id), null texts and labels left out."""
    t = texts.dropna(subset=["id"]).drop_duplicates("id")[["id", "text"]]
    lab = labels.dropna(subset=["id"]).drop_duplicates("id")[["id", "label"]]
    return t.merge(lab, on="id", how="inner").dropna(subset=["text", "label"])


def data_profile(texts: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    """The data profile drift is measured against: class counts and the text-length histogram.

    promote stores it beside the champion (``models/champion/data_profile.json``), so the next
    validation compares new data with the data the champion was trained on.
    """
    rec = labelled_records(texts, labels)
    lengths = rec["text"].astype(str).str.len()
    counts = rec["label"].astype(str).value_counts().sort_index()
    n = max(len(rec), 1)
    return {
        "version": 1,
        "rows": int(len(rec)),
        "classes": {k: int(v) for k, v in counts.items()},
        "class_share": {k: round(float(v) / n, 6) for k, v in counts.items()},
        "text_length": {
            "quantiles": {k: float(lengths.quantile(q)) if len(lengths) else None
                          for k, q in PROFILE_QUANTILES.items()},
            "mean": round(float(lengths.mean()), 3) if len(lengths) else None,
            "counts": {str(k): int(v) for k, v in lengths.value_counts().sort_index().items()},
        },
    }


def profile_of_ingested_data() -> dict[str, Any]:
    """:func:`data_profile` of the ingested texts and labels (what promote stores)."""
    from stages.io import read_parquet

    return data_profile(read_parquet(RAW_TEXTS, "texts", fix="run `dvc repro ingest`"),
                        read_parquet(LABELS, "labels", fix="run `dvc repro ingest`"))


# ---------------------------------------------------------------- files inside the directories above
# (dvc.yaml declares these paths one by one; tests/test_dvc_deps.py checks each is named here)
ONNX_FP32_PATH = ONNX_DIR / ONNX_FP32
ONNX_INT8_PATH = ONNX_DIR / ONNX_INT8
ONNX_FP16_PATH = ONNX_DIR / ONNX_FP16
ONNX_TOKENIZER_PATH = ONNX_DIR / TOKENIZER_DIR
ONNX_LABELS_PATH = ONNX_DIR / LABELS_FILE
ONNX_OOS_JSON_PATH = ONNX_DIR / OOS_JSON
ONNX_OOS_ARRAYS_PATH = ONNX_DIR / OOS_ARRAYS
TRAIN_STATE_FILE = TRAIN_STATE_DIR / "state.pt"
TRAIN_DONE_FILE = TRAIN_STATE_DIR / "done.json"
VALIDATION_RESULTS = "results.json"  # inside RAW_VALIDATION_DIR / SPLIT_VALIDATION_DIR
VALIDATION_REPORT_HTML = "report.html"  # the self-contained report a person opens (offline)
VALIDATION_SUMMARY = "summary.md"
VALIDATION_DOCS = "data_docs"  # the Data Docs site (rebuilt every run, not a DVC output)
RAW_VALIDATION_RESULTS = RAW_VALIDATION_DIR / VALIDATION_RESULTS
RAW_VALIDATION_SUMMARY = RAW_VALIDATION_DIR / VALIDATION_SUMMARY
RAW_VALIDATION_HTML = RAW_VALIDATION_DIR / VALIDATION_REPORT_HTML
SPLIT_VALIDATION_RESULTS = SPLIT_VALIDATION_DIR / VALIDATION_RESULTS
SPLIT_VALIDATION_SUMMARY = SPLIT_VALIDATION_DIR / VALIDATION_SUMMARY
SPLIT_VALIDATION_HTML = SPLIT_VALIDATION_DIR / VALIDATION_REPORT_HTML

# ---------------------------------------------------------------- table schemas
# what ingest accepts and the splits carry (texts and labels are joined on `id`)
TEXT_COLUMNS = {"required": ["id", "text"], "optional": ["source", "created_at"]}
LABEL_COLUMNS = {"required": ["id", "label"], "optional": ["annotator"]}
SPLIT_COLUMNS = ["id", "text", "label"]

# ---------------------------------------------------------------- metrics, in reading order
# the metrics files `dvc metrics diff` and the PR report compare, in reading order
METRIC_FILES = (EVAL_METRICS, GATE_METRICS, DATA_METRICS, TRAIN_METRICS, PARITY_METRICS,
                QUANTIZE_METRICS, EXPORT_METRICS, LABEL_AUDIT_METRICS)


# ---------------------------------------------------------------- serving
# inside the champion's onnx/: test texts with the probabilities promote computed for them with
# the exported files; the service reloads a champion only if it reproduces them
CHAMPION_REFERENCE = "reference_predictions.parquet"
ONNX_PRECISIONS = {"int8": ONNX_INT8, "fp32": ONNX_FP32, "fp16": ONNX_FP16}
PREDICTION_LOG_DIR = Path("logs/predictions")  # the service's default serve.log_dir (gitignored)


# ---------------------------------------------------------------- production monitoring
MONITOR_REFERENCE = "monitor_reference"  # inside CHAMPION_DIR: test-split predictions, calibration
MONITOR_METRICS = Path("metrics/monitor.json")  # the latest window's drift scores
MONITORING_REPORTS_DIR = Path("reports/monitoring")  # <window>.md + .png per monitored window
MONITOR_HISTORY = MONITORING_REPORTS_DIR / "history.jsonl"  # one line per window: scores over time

# ---------------------------------------------------------------- scale-out (scale/: batch scoring, sweeps)
SCORES_DIR = Path("data/scores")  # default output of `python -m scale.score` / flows.score
SCORE_SHARDS = "shards"           # inside the output dir: <shard>.parquet + <shard>.done.json
SCORE_MANIFEST = "manifest.json"  # inside the output dir: shards, rows, model, throughput
SWEEP_RESULTS = Path("reports/sweep.json")
SWEEP_REPORT = Path("reports/sweep.md")


def default_scoring_model_dir() -> Path:
    """The ONNX export batch scoring uses by default: the champion's, else the pipeline's latest."""
    return champion_onnx_dir() or ONNX_DIR
