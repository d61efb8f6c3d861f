"""score: the Prefect flow that scores a corpus of shards with the champion's ONNX model.

    python -m flows.score --input DIR_OR_URL [--model-dir DIR] [--output DIR]
                          [--address tcp://HOST:8786] [--workers N]

Thin on purpose: one task runs :func:`scale.score.score_corpus` on a Dask cluster (local by
default); the flow adds a run record, the manifest as table artifacts and a Failed state naming
the bad shards. A re-run only scores what is not done.
More: docs/scale.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Failed

from stages.common import StageError, run_cli


@task(name="score-shards")
def score_shards(source: str, output: str, model_dir: str | None, overrides: dict[str, Any]
                 ) -> dict[str, Any]:
    from scale.score import load_score_params, score_corpus

    params = load_score_params(overrides)  # the checks the CLI applies, flags included
    return score_corpus(source, Path(output or params.output),
                        Path(model_dir) if model_dir else None, params)


def manifest_artifacts(manifest: dict[str, Any]) -> None:
    from scale.score import summary_line

    rows = [{k: s.get(k) for k in ("shard", "status", "rows", "seconds", "rows_per_s", "worker",
                                   "peak_rss_mb")} for s in manifest["shards"]]
    create_table_artifact(key="score-shards", table=rows, description=summary_line(manifest))
    t, model = manifest["totals"], manifest["model"]
    create_markdown_artifact(
        key="score-summary",
        markdown=(f"# Scored {t['rows']} rows in {t['shards']} shards\n\n"
                  f"- model: `{model['path']}` (sha256 `{model['sha256'][:12]}`)\n"
                  f"- engine: {manifest['engine']}\n"
                  f"- this run: {t['scored']} scored, {t['skipped']} skipped, {t['failed']} failed;"
                  f" {t['rows_per_s'] or 0} rows/s\n- manifest: `{manifest['output']}/manifest.json`"),
        description="batch scoring summary")


@flow(name="score")
def score(source: str, output: str | None = None, model_dir: str | None = None,
          address: str | None = None, workers: int | None = None, engine: str | None = None,
          precision: str | None = None) -> Any:
    """Score every unfinished shard under ``source``; Failed (with the reason) if a shard failed."""
    logger = get_run_logger()
    overrides = {k: v for k, v in {"address": address, "workers": workers, "engine": engine,
                                   "precision": precision}.items() if v is not None}
    try:
        manifest = score_shards(source, output or "", model_dir, overrides)
    except StageError as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc).splitlines()[0])
    manifest_artifacts(manifest)
    from scale.score import summary_line

    logger.info("%s", summary_line(manifest))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="directory or URL of Parquet/CSV shards")
    parser.add_argument("--output", help="default: score.output in params.yaml")
    parser.add_argument("--model-dir", help="ONNX export (default: the champion's, else models/onnx)")
    parser.add_argument("--address", help="a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, help="local cluster worker processes")
    args = parser.parse_args()
    state = score(source=args.input, output=args.output, model_dir=args.model_dir,
                  address=args.address, workers=args.workers, return_state=True)
    print(f"score: {state.name}: {state.message or ''}".rstrip(": "))
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    run_cli(main)
