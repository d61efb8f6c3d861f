"""Score a CSV of texts with the exported ONNX model: the one way to use the shipped artifact.

    python -m commands.predict --model models/onnx/model.int8.onnx --input in.csv --output out.csv

Reads ``text`` (keeps ``id``), writes ``label``, ``out_of_scope`` and ``oos_score`` (for a model
exported with its out-of-scope detector: an out-of-scope row's label is the detector's, possibly
empty) and ``prob_<class>`` columns in input order, streamed chunk by chunk and renamed into place
at the end. Imports only onnxruntime, tokenizers, numpy and pandas (plus tqdm): no torch, no
transformers (tests/test_predict.py checks that).
More: docs/onnx.md, docs/out_of_scope.md, docs/hardening.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stages import artifacts
from stages.common import StageError, get_logger, run_cli

log = get_logger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m commands.predict", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path,
                        help="ONNX model file, e.g. models/onnx/model.int8.onnx")
    parser.add_argument("--input", required=True, type=Path,
                        help="CSV (or .parquet/.jsonl) with a 'text' column and optional 'id'")
    parser.add_argument("--output", required=True, type=Path, help="CSV to write")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for ONNX Runtime (default: all cores)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CUDA when a GPU and onnxruntime-gpu are present, else CPU")
    parser.add_argument("--chunk-rows", type=int, default=10_000,
                        help="rows read, scored and written at a time (bounds memory)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    return args


def iter_text_chunks(path: Path, chunk_rows: int = 10_000) -> Any:
    """The input in chunks with a string ``text`` column; StageError for what a user can fix."""
    from stages.scoring import text_table
    from stages.tables import iter_table_chunks

    if not path.is_file():
        raise StageError(f"input file not found: {path}", fix="check --input")
    for df in iter_table_chunks(str(path), "input", chunk_rows):
        yield text_table(df, "input", str(path))


def summarise(model: Any, counts: dict[str, int], provider_name: str,
              labels: Any) -> dict[str, Any]:
    """The run's counts; ``out_of_scope`` is None for a model without a detector."""
    return {**counts, "out_of_scope": counts.get("out_of_scope"), "max_length": model.max_length,
            "provider": provider_name,
            "labels": dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])))}


def predict_file(model_path: Path, input_path: Path, output_path: Path, batch_size: int = 32,
                 threads: int | None = None, device: str = "auto",
                 chunk_rows: int = 10_000) -> dict[str, Any]:
    """Score ``input_path`` chunk by chunk into ``output_path`` (CSV, written atomically)."""
    from collections import Counter

    from stages.common import progress
    from stages.io import atomic_path
    from stages.onnx_session import load_onnx_model, provider
    from stages.scoring import NO_DETECTOR_WARNING, score_table

    model = load_onnx_model(model_path, threads=threads, device=device)
    totals = {"rows": 0, "truncated": 0, "empty_texts": 0}
    if model.oos is None:
        log.warning(NO_DETECTOR_WARNING, model_path)
    else:
        totals["out_of_scope"] = 0
    labels: Counter[str] = Counter()
    with atomic_path(output_path) as tmp, tmp.open("w", encoding="utf-8", newline="") as f, \
            progress(None, desc="predict", unit="row") as bar:
        for df in iter_text_chunks(input_path, chunk_rows):
            out, counts = score_table(model, df, batch_size)
            out.to_csv(f, index=False, header=totals["rows"] == 0)
            for k, v in counts.items():
                totals[k] += v
            labels.update(out["label"].dropna().tolist())  # a null label: counted as out of scope
            bar.update(len(out))
    return summarise(model, totals, provider(model.session), labels)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.output.resolve() == args.input.resolve():
        raise StageError("--output is the input file", where=str(args.output),
                         fix="write the scores to a new file")
    if not args.model.is_file():
        raise StageError(f"model not found: {args.model}",
                         fix="run `dvc repro quantize` (or `dvc pull`) to get "
                         f"{artifacts.ONNX_INT8_PATH}, or pass --model")
    start = time.perf_counter()
    summary = predict_file(args.model, args.input, args.output, args.batch_size, args.threads,
                           args.device, args.chunk_rows)
    seconds = time.perf_counter() - start
    print(f"scored {summary['rows']} rows in {seconds:.1f}s with {args.model} on "
          f"{summary['provider']} -> {args.output}")
    print(f"  truncated to {summary['max_length']} tokens: {summary['truncated']}"
          f"   empty texts: {summary['empty_texts']}")
    if summary["out_of_scope"] is not None:
        print(f"  out of scope: {summary['out_of_scope']}")
    print("  predicted labels: " + ", ".join(f"{k} {v}" for k, v in summary["labels"].items()))
    sys.stdout.flush()


if __name__ == "__main__":
    run_cli(main)
