"""Batch scoring of a corpus of shards with the shipped ONNX model, on a distributed engine.

    python -m scale.score --input DIR_OR_URL [--model-dir DIR] [--output DIR]
                          [--engine dask|inline] [--address tcp://HOST:8786] [--workers N]

Each shard is scored like ``predict`` (stages.onnx_session; with the model's out-of-scope detector,
``out_of_scope`` and ``oos_score`` columns too) and written atomically with a ``.done.json`` marker
naming input, model and detector, so a re-run skips finished shards and every row ends up exactly
once. ``<output>/manifest.json`` records the run (out-of-scope rows per shard and in total);
knobs: ``score:`` in params.yaml.
More: docs/scale.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from stages import artifacts
from stages.common import (
    PositiveInt,
    StageError,
    get_logger,
    load_params,
    params_section,
    progress,
    run_cli,
)

log = get_logger(__name__)

SHARD_SUFFIXES = (".parquet", ".csv", ".jsonl")
MODEL_FILES = {"int8": artifacts.ONNX_INT8, "fp32": artifacts.ONNX_FP32}
# Makes the named shard wait before writing its output (tests use it to kill a worker mid-shard).
TEST_DELAY_ENV = "RETRAINER_SCORE_TEST_DELAY"  # "<shard name>=<seconds>"


@params_section("score")
@dataclass
class ScoreParams:
    """``score:`` in params.yaml (command-line flags override these)."""

    engine: Literal["dask", "inline"] = "dask"
    address: str | None = None        # a running Dask scheduler (tcp://host:8786); null: local cluster
    workers: PositiveInt = 2          # local cluster: worker processes
    threads_per_worker: PositiveInt = 1  # ONNX Runtime intra-op threads in each worker
    memory_limit: str = "auto"        # local cluster: per-worker memory limit (e.g. 2GiB)
    precision: Literal["int8", "fp32"] = "int8"
    batch_size: PositiveInt = 64      # texts per ONNX Runtime call (grouped by length)
    chunk_rows: PositiveInt = 20000   # rows tokenised at a time inside a shard: bounds memory
    output: str = str(artifacts.SCORES_DIR)


@dataclass(frozen=True)
class Shard:
    name: str        # unique within the run; names the output files
    url: str         # what fsspec opens
    input_key: str   # changes whenever the file changes (fsspec ukey: size, mtime/etag)


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs for one shard (pickled to it: plain values only)."""

    shard: Shard
    output: str
    marker: str
    model_path: str
    model_sha256: str
    threads: int
    batch_size: int
    chunk_rows: int
    detector_sha256: str | None = None  # the out-of-scope detector's files; None: no detector


# ------------------------------------------------------------------------------ planning


def plan_shards(source: str) -> list[Shard]:
    """The shards under ``source`` (a directory, local or fsspec URL, or one file), sorted."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(source)
    if not fs.exists(root):
        raise StageError(f"input not found: {source}", fix="pass a directory of Parquet/CSV shards")
    if fs.isdir(root):
        paths = sorted(p for p in fs.find(root) if p.lower().endswith(SHARD_SUFFIXES)
                       and not Path(p).name.startswith("."))
        base = root.rstrip("/")
    else:
        paths, base = [root], str(Path(root).parent)
    if not paths:
        raise StageError(f"no shards in {source}", where=source,
                         fix=f"put the texts in files ending {', '.join(SHARD_SUFFIXES)}")
    local = fs.protocol in ("file", "local") or "file" in (fs.protocol or ())
    rels = [p[len(base):].lstrip("/") if p.startswith(base) else Path(p).name for p in paths]
    stems = [str(Path(r).with_suffix("")).replace("/", "__") for r in rels]
    # part-0001.parquet -> part-0001; keep the suffix only where two files share a stem
    names = [stem if stems.count(stem) == 1 else rel.replace("/", "__")
             for stem, rel in zip(stems, rels, strict=True)]
    return [Shard(name=name, url=p if local else fs.unstrip_protocol(p), input_key=fs.ukey(p))
            for name, p in zip(names, paths, strict=True)]


def resolve_model(model_dir: Path | None, precision: str) -> Path:
    """The model file: ``model_dir`` (default: the champion's ONNX export, else models/onnx)."""
    model_dir = Path(model_dir) if model_dir else artifacts.default_scoring_model_dir()
    path = model_dir / MODEL_FILES[precision]
    if not path.is_file():
        raise StageError(f"no {precision} ONNX model in {model_dir}", where=str(path),
                         fix="run `dvc repro quantize` (int8) / `dvc repro export` (fp32), or pass "
                         "--model-dir / --precision")
    return path


def check_output(output: Path, source: str) -> None:
    """The output must not be (inside) the input: the next run would take scores for shards."""
    if "://" in source:
        return
    src, out = Path(source).resolve(), output.resolve()
    if out == src or src in out.parents or (src.is_file() and out == src.parent):
        raise StageError("the output folder is inside the input", where=str(output),
                         fix="write the scores outside the folder of shards")


def finished(task: ShardTask) -> dict[str, Any] | None:
    """The shard's marker when it belongs to this input and this model (and its output exists)."""
    import json

    marker, output = Path(task.marker), Path(task.output)
    if not (marker.is_file() and output.is_file()):
        return None
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged marker: score the shard again
    same = (done.get("input_key") == task.shard.input_key
            and done.get("model_sha256") == task.model_sha256
            and done.get("detector_sha256") == task.detector_sha256)
    return done if same else None


def remove_stale_temps(shards_dir: Path) -> int:
    """Temp folders a killed worker left behind (atomic_path's ``.<name>.*.tmp``)."""
    stale = [p for p in shards_dir.glob(".*.tmp") if p.is_dir()] if shards_dir.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


# ------------------------------------------------------------------------------ on a worker

# one session per worker process, reused across shards; keyed by the files' hashes too, so a
# process that outlives a run (the inline engine in a flow) never scores with a replaced model
_MODELS: dict[tuple[str, int, str, str | None], Any] = {}


def _model(task: ShardTask) -> Any:
    from stages.onnx_session import load_onnx_model

    key = (task.model_path, task.threads, task.model_sha256, task.detector_sha256)
    if key not in _MODELS:
        # a worker is sized in cores (threads_per_worker): the tokenizer's own all-core thread
        # pool would oversubscribe them when several workers share a machine
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        _MODELS.clear()  # the previous model's session: not needed any more
        _MODELS[key] = load_onnx_model(task.model_path, threads=task.threads, device="cpu")
    return _MODELS[key]


def _test_delay(name: str) -> float:
    spec = os.environ.get(TEST_DELAY_ENV, "")
    shard, _, seconds = spec.partition("=")
    return float(seconds) if shard == name and seconds else 0.0


def read_shard(url: str) -> Any:
    from stages.scoring import text_table
    from stages.tables import read_table

    return text_table(read_table(url, "shard"), "shard", url)


def score_shard(task: ShardTask) -> dict[str, Any]:
    """Score one shard and write its output, then its marker (both atomic). Runs on a worker."""
    from stages.io import write_json, write_parquet
    from stages.scoring import score_table

    start = time.perf_counter()
    model = _model(task)
    out, counts = score_table(model, read_shard(task.shard.url), task.batch_size, task.chunk_rows)
    if delay := _test_delay(task.shard.name):
        time.sleep(delay)
    write_parquet(task.output, out)
    seconds = time.perf_counter() - start
    record = {
        "shard": task.shard.name, "input": task.shard.url, "input_key": task.shard.input_key,
        "output": task.output, "model_sha256": task.model_sha256,
        "detector_sha256": task.detector_sha256, "rows": len(out),
        "truncated": counts["truncated"], "empty_texts": counts["empty_texts"],
        "out_of_scope": counts.get("out_of_scope"), "seconds": round(seconds, 3),
        "rows_per_s": round(len(out) / max(seconds, 1e-9), 1), "worker": _worker_name(),
        "pid": os.getpid(), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                 / 1024, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(task.marker, record)
    return record


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # not inside a Dask worker (the inline engine)
        return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------ the run


def shard_function() -> Any:
    """:func:`score_shard` from the importable module, also under ``python -m scale.score``.

    There this file runs as ``__main__``, and a function of ``__main__`` travels to the workers
    by value, with a fresh copy of the module's globals: every shard would load its own ONNX
    session (and the worker's function cache would keep them all alive).
    """
    import scale.score

    return scale.score.score_shard


@dataclass
class ScorePlan:
    """What a run will do: every shard's task, the model they are scored with, the shards done."""

    source: str
    output: Path
    model_path: Path
    model_sha256: str
    labels: list[str]
    detector: dict[str, Any] | None         # the out-of-scope detector (method, threshold, label)
    tasks: dict[str, ShardTask]             # every shard of the input, in input order
    skipped: dict[str, dict[str, Any]]      # shards whose marker names this input and model

    @property
    def todo(self) -> list[tuple[str, ShardTask]]:
        """(engine key, task) for every shard still to score."""
        return [(f"score-{name}", task) for name, task in self.tasks.items()
                if name not in self.skipped]


@dataclass
class ScoreRun:
    """What the engine did with a plan's unfinished shards."""

    records: dict[str, dict[str, Any]]      # shard name -> its record, "scored" or "failed"
    failed: dict[str, str]                  # shard name -> its error
    engine: dict[str, Any]                  # the engine's description
    engine_start_s: float
    scoring_s: float


def score_corpus(source: str, output: Path, model_dir: Path | None, params: ScoreParams,
                 engine: Any = None) -> dict[str, Any]:
    """Score every unfinished shard of ``source`` into ``output``; return the manifest.

    ``engine``: an open :class:`scale.engine.Engine` (the caller closes it); None opens the one
    ``params`` names and closes it after the run. Raises StageError after writing the manifest
    when a shard failed (its error is in the manifest; finished shards are kept).
    """
    plan = plan_run(source, Path(output), model_dir, params)
    run = run_shards(plan, params, engine)
    manifest = write_manifest(plan, run, params)
    if run.failed:
        raise StageError(f"{len(run.failed)} of {len(plan.tasks)} shard(s) failed: "
                         + "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in run.failed.items()),
                         where=str(plan.output / artifacts.SCORE_MANIFEST),
                         fix="fix those shards and re-run: finished shards are skipped")
    return manifest


def plan_run(source: str, output: Path, model_dir: Path | None, params: ScoreParams) -> ScorePlan:
    """Check the input, output and model; list the shards and which are already scored."""
    from stages.io import sha256_file
    from stages.onnx_session import load_labels

    check_output(output, source)
    model_path = resolve_model(model_dir, params.precision)
    labels = load_labels(model_path.parent / artifacts.LABELS_FILE)
    model_sha = sha256_file(model_path)
    detector, detector_sha = describe_detector(model_path)
    shards = plan_shards(source)
    shards_dir = output / artifacts.SCORE_SHARDS
    if removed := remove_stale_temps(shards_dir):
        log.info("removed %d temp folder(s) left by an interrupted run", removed)
    tasks = {s.name: ShardTask(s, str((shards_dir / f"{s.name}.parquet").resolve()),
                               str((shards_dir / f"{s.name}.done.json").resolve()),
                               str(model_path.resolve()), model_sha, params.threads_per_worker,
                               params.batch_size, params.chunk_rows, detector_sha)
             for s in shards}
    skipped: dict[str, dict[str, Any]] = {}
    for name, task in tasks.items():
        if done := finished(task):
            skipped[name] = {**done, "status": "skipped"}
    plan = ScorePlan(source, output, model_path, model_sha, labels, detector, tasks, skipped)
    log.info("%d shard(s): %d already scored with this model, %d to score with %s", len(tasks),
             len(skipped), len(plan.todo), model_path)
    return plan


def describe_detector(model_path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The out-of-scope detector beside ``model_path`` (read here, so a damaged one fails the run
    before any shard) and one hash of its files; (None, None), with a warning, without one."""
    import hashlib

    from stages.io import sha256_file
    from stages.oos_detector import load
    from stages.scoring import NO_DETECTOR_WARNING

    detector = load(model_path.parent)
    if detector is None:
        log.warning(NO_DETECTOR_WARNING, model_path)
        return None, None
    files = [model_path.parent / artifacts.OOS_JSON, model_path.parent / artifacts.OOS_ARRAYS]
    combined = hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
    return {"method": detector.method, "threshold": detector.threshold,
            "label": detector.label}, combined


def run_shards(plan: ScorePlan, params: ScoreParams, engine: Any = None) -> ScoreRun:
    """Map the plan's unfinished shards over ``engine`` (None: open the one ``params`` names
    when there is work, and close it after); a shard's failure is recorded, not raised."""
    todo = plan.todo
    own_engine = engine is None
    t0 = time.perf_counter()
    if own_engine and todo:
        from scale.engine import open_engine

        engine = open_engine(params.engine, params.address, params.workers,
                             params.threads_per_worker, params.memory_limit)
    engine_start_s = time.perf_counter() - t0
    described = engine.describe() if engine is not None else {"engine": params.engine}
    t1 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    try:
        for key, record, error in progress(engine.map_unordered(shard_function(), todo) if todo else [],
                                           total=len(todo), desc="shards", unit="shard"):
            name = key.removeprefix("score-")
            if error is not None:
                failed[name] = f"{type(error).__name__}: {error}"
                records[name] = {"shard": name, "input": plan.tasks[name].shard.url,
                                 "status": "failed", "error": failed[name]}
                log.error("shard %s failed: %s", name, failed[name])
            else:
                records[name] = {**record, "status": "scored"}
    finally:
        if own_engine and engine is not None:
            engine.close()
    return ScoreRun(records, failed, described, engine_start_s, time.perf_counter() - t1)


def write_manifest(plan: ScorePlan, run: ScoreRun, params: ScoreParams) -> dict[str, Any]:
    """``<output>/manifest.json``: every shard's record, the model, the engine and the totals."""
    from stages.io import write_json

    records = {**plan.skipped, **run.records}
    scored = [r for r in records.values() if r["status"] == "scored"]
    rows_scored = sum(r["rows"] for r in scored)
    manifest = {
        "input": plan.source,
        "output": str(plan.output),
        "status": "failed" if run.failed else "complete",
        "model": {"path": str(plan.model_path), "sha256": plan.model_sha256,
                  "precision": params.precision, "labels": plan.labels,
                  "out_of_scope": plan.detector,
                  "champion": artifacts.read_champion_pointer()},
        "engine": run.engine,
        "params": asdict(params),
        "shards": [records[name] for name in plan.tasks],
        "totals": {
            "shards": len(plan.tasks), "scored": len(scored),
            "skipped": len(plan.tasks) - len(scored) - len(run.failed), "failed": len(run.failed),
            "rows": sum(r.get("rows", 0) for r in records.values()),
            # rows answered out of scope over every finished shard; None: the model has no detector
            "out_of_scope": (sum(r.get("out_of_scope") or 0 for r in records.values())
                             if plan.detector is not None else None),
            "rows_scored_this_run": rows_scored,
            "engine_start_s": round(run.engine_start_s, 3),
            "scoring_s": round(run.scoring_s, 3),
            "rows_per_s": round(rows_scored / run.scoring_s, 1) if rows_scored else None,
            "peak_rss_mb_max": max((r["peak_rss_mb"] for r in scored), default=None),
        },
    }
    write_json(plan.output / artifacts.SCORE_MANIFEST, manifest)
    return manifest


# ------------------------------------------------------------------------------ CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scale.score", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="directory or URL of Parquet/CSV shards")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="ONNX export folder (default: the champion's, else models/onnx)")
    parser.add_argument("--output", type=Path, default=None, help="default: score.output")
    parser.add_argument("--engine", choices=["dask", "inline"], default=None)
    parser.add_argument("--address", default=None, help="a running Dask scheduler, tcp://HOST:8786")
    parser.add_argument("--workers", type=int, default=None, help="local cluster worker processes")
    parser.add_argument("--precision", choices=["int8", "fp32"], default=None)
    return parser.parse_args(argv)


def load_score_params(overrides: dict[str, Any] | None = None) -> ScoreParams:
    """``score:`` with the flags that were given (None: not given) in place of the file's values;
    the CLI and the flow both read it here, so both apply the same checks."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return load_params("score", ScoreParams, overrides=given)


def params_with(args: argparse.Namespace) -> ScoreParams:
    return load_score_params({"engine": args.engine, "address": args.address,
                              "workers": args.workers, "precision": args.precision})


def summary_line(manifest: dict[str, Any]) -> str:
    t = manifest["totals"]
    speed = f" at {t['rows_per_s']:.0f} rows/s" if t["rows_per_s"] else ""
    oos = f"; {t['out_of_scope']} rows out of scope" if t.get("out_of_scope") is not None else ""
    return (f"{t['shards']} shard(s), {t['rows']} rows: scored {t['scored']}, skipped "
            f"{t['skipped']} (already done){speed} on {manifest['engine'].get('engine')} "
            f"-> {manifest['output']}{oos}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    params = params_with(args)
    manifest = score_corpus(args.input, args.output or Path(params.output), args.model_dir, params)
    print(summary_line(manifest), flush=True)


if __name__ == "__main__":
    run_cli(main)
