"""Score a CSV of texts with the exported ONNX model: the one way to use the shipped artifact.

    python -m commands.predict --model models/onnx/model.int8.onnx --input in.csv --output out.csv

Reads the ``text`` column (and keeps ``id`` when present, else the text), writes ``label`` and
one ``prob_<class>`` column per class, in the input's row order, atomically. The tokenizer
(``tokenizer/``) and class names (``labels.json``) are found next to the model file. Texts
longer than the model's max_length are truncated and counted in the summary.

Imports only onnxruntime, tokenizers, numpy and pandas (plus tqdm): no torch, no transformers,
so a serving image needs neither. tests/test_predict.py checks that.
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
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def read_texts(path: Path) -> Any:
    """The input table with a string ``text`` column; StageError for what a user can fix."""
    from stages.io import read_table

    if not path.is_file():
        raise StageError(f"input file not found: {path}", fix="check --input")
    df = read_table(str(path), "input")  # errors for unreadable, non-UTF-8 and empty files
    if "text" not in df.columns:
        raise StageError(f"input has no 'text' column (columns: {list(df.columns)})",
                         where=str(path), fix="name the column holding the texts 'text'")
    df["text"] = df["text"].fillna("").astype(str)
    return df


def predict(model_path: Path, df: Any, batch_size: int = 32, threads: int | None = None,
            device: str = "auto") -> tuple[Any, dict[str, Any]]:
    """Scored table (id or text, label, prob_<class>...) and a summary of the run."""
    import pandas as pd

    from stages.metrics import softmax
    from stages.onnx_session import encode, load_onnx_model, provider, run_logits

    model = load_onnx_model(model_path, threads=threads, device=device)
    texts = df["text"].tolist()
    encodings = encode(model, texts)
    probs = softmax(run_logits(model, encodings, batch_size=batch_size, show_progress=True))
    keep = "id" if "id" in df.columns else "text"
    out = pd.DataFrame({keep: df[keep].to_numpy()})
    out["label"] = [model.labels[i] for i in probs.argmax(axis=1)]
    for j, name in enumerate(model.labels):
        out[f"prob_{name}"] = probs[:, j].round(6)
    summary = {
        "rows": len(texts),
        "truncated": sum(1 for e in encodings if e.overflowing),
        "max_length": model.max_length,
        "empty_texts": sum(1 for t in texts if not t.strip()),
        "provider": provider(model.session),
        "labels": out["label"].value_counts().to_dict(),
    }
    return out, summary


def main(argv: Sequence[str] | None = None) -> None:
    from stages.io import write_csv

    args = parse_args(argv)
    if args.output.resolve() == args.input.resolve():
        raise StageError("--output is the input file", where=str(args.output),
                         fix="write the scores to a new file")
    if not args.model.is_file():
        raise StageError(f"model not found: {args.model}",
                         fix="run `dvc repro quantize` (or `dvc pull`) to get "
                         f"{artifacts.ONNX_INT8_PATH}, or pass --model")
    start = time.perf_counter()
    df = read_texts(args.input)
    log.info("read %d rows from %s", len(df), args.input)
    out, summary = predict(args.model, df, args.batch_size, args.threads, args.device)
    write_csv(args.output, out)
    seconds = time.perf_counter() - start
    print(f"scored {summary['rows']} rows in {seconds:.1f}s with {args.model} on "
          f"{summary['provider']} -> {args.output}")
    print(f"  truncated to {summary['max_length']} tokens: {summary['truncated']}"
          f"   empty texts: {summary['empty_texts']}")
    print("  predicted labels: " + ", ".join(f"{k} {v}" for k, v in summary["labels"].items()))
    sys.stdout.flush()


if __name__ == "__main__":
    run_cli(main)
