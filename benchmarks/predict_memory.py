"""Peak memory of `python -m commands.predict`: the streaming CLI vs the whole-file baseline.

    .venv/bin/python benchmarks/predict_memory.py --rows 100000 1000000 --baseline-rows 100000 300000
    .venv/bin/python benchmarks/predict_memory.py --model models/onnx/model.int8.onnx \
        --rows 100000 --baseline-rows 100000

(paths relative to the repository root)

Each run is its own child process; its peak RSS is the kernel's high-water mark of the whole
process (Python, ONNX Runtime, tokenizer, pandas), not a Python-heap estimate: VmHWM from
/proc/self/status at exit, cross-checked with ru_maxrss from os.wait4. (Linux carries a forked
child's ru_maxrss over from the parent's RSS at fork, so this parent never imports pandas or
torch itself: inputs and the tiny export are made in helper processes.)
The baseline is stages/predict.py as it was at ``--baseline-rev`` (read with `git show` into a
temporary module and run the same way): it read the whole file and tokenised every text before
scoring. Both write a CSV; where both ran on the same input the outputs are compared byte for byte.

Without ``--model`` the tiny random BERT of the tests is exported to ONNX (a few seconds): its
forward pass is cheap, so the figure is the memory of the reading/tokenising/writing machinery,
which is what grows with the input. With the real MiniLM int8 export the model adds its own
(constant) share.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402  (stdlib only: the parent stays small, see above)

WORDS = ["where", "is", "my", "package", "refund", "the", "charge", "cancel", "plan", "card",
         "declined", "login", "password", "address", "order", "please", "help", "today"]


def make_input(path: Path, rows: int) -> None:
    """``rows`` short texts (3-8 words, ~30 characters) with ids, as Parquet."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 9, rows)
    words = rng.integers(0, len(WORDS), (rows, 8))
    texts = [" ".join(WORDS[w] for w in words[i, :lengths[i]]) + f" {i % 997}" for i in range(rows)]
    pd.DataFrame({"id": [f"r{i:07d}" for i in range(rows)], "text": texts}).to_parquet(
        path, index=False, row_group_size=100_000)


def tiny_export(root: Path) -> Path:
    """The tests' tiny random BERT, fine-tuned nowhere, exported to ONNX by the export stage."""
    from tests.test_export import build_project
    from tests.tiny_model import build_tiny_bert

    base = build_tiny_bert(root / "tiny-bert", pooling="mean")
    project = build_project(root / "project", base, quantize=False)
    return project / "models" / "onnx" / "model.onnx"


def baseline_module(rev: str, into: Path) -> Path:
    source = subprocess.run(["git", "show", f"{rev}:stages/predict.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    (into / "baseline_predict.py").write_text(source, encoding="utf-8")
    return into


# at exit the child writes its own high-water RSS (kB) where PEAK_FILE says
PEAK_HOOK = ("import atexit, os\n"
             "def _peak():\n"
             "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
             "    open(os.environ['PEAK_FILE'], 'w').write(hwm.split()[1])\n"
             "atexit.register(_peak)\n")


def helper(*args: str) -> None:
    """Run this script's heavy helpers (input, export, compare) in their own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, __file__, *args], cwd=REPO, env=env, check=True,
                   stderr=subprocess.DEVNULL)


def compare(a: Path, b: Path) -> str:
    """Labels and probabilities of two outputs: identical bytes, or the largest difference."""
    import numpy as np
    import pandas as pd

    if a.read_bytes() == b.read_bytes():
        return "identical bytes"
    x, y = pd.read_csv(a), pd.read_csv(b)
    assert list(x.columns) == list(y.columns) and x["id"].equals(y["id"])
    probs = [c for c in x.columns if c.startswith("prob_")]
    diff = float(np.abs(x[probs].to_numpy() - y[probs].to_numpy()).max())
    agree = float((x["label"] == y["label"]).mean())
    return f"same ids/order; labels agree {agree:.4%}; max |prob diff| {diff:.1e}"


def run(kind: str, model: Path, src: Path, out: Path, baseline_dir: Path | None,
        threads: int) -> dict:
    args = ["--model", str(model), "--input", str(src), "--output", str(out),
            "--threads", str(threads)]
    if kind == "baseline":
        code = (PEAK_HOOK + f"import sys; sys.path.insert(0, {str(baseline_dir)!r})\n"
                "import baseline_predict; baseline_predict.main(sys.argv[1:])")
    else:
        code = PEAK_HOOK + "import runpy; runpy.run_module('commands.predict', run_name='__main__')"
    cmd = [sys.executable, "-c", code, *args]
    peak_file = out.with_suffix(".peak")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PEAK_FILE": str(peak_file)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed (exit {proc.returncode}): {stdout[-2000:]}")
    return {"peak_rss_mb": int(peak_file.read_text()) / 1024,
            "wait4_maxrss_mb": usage.ru_maxrss / 1024, "seconds": seconds,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest()[:16]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("--_"):  # a helper process
        cmd, *rest = sys.argv[1:]
        if cmd == "--_input":
            make_input(Path(rest[0]), int(rest[1]))
        elif cmd == "--_export":
            print(tiny_export(Path(rest[0])), file=open(rest[1], "w"))  # noqa: SIM115
        elif cmd == "--_compare":
            print(compare(Path(rest[0]), Path(rest[1])), file=open(rest[2], "w"))  # noqa: SIM115
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--baseline-rows", type=int, nargs="*", default=[100_000],
                        help="row counts to run the whole-file baseline on (it needs ~16 KB/row)")
    parser.add_argument("--baseline-rev", default="main",
                        help="git revision whose stages/predict.py is the baseline")
    parser.add_argument("--model", type=Path, help="exported ONNX model (default: tiny BERT)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.model is not None:
        machine.require(args.model, "the ONNX model (--model)",
                        "pass an exported model, e.g. models/onnx/model.int8.onnx after `dvc repro quantize`,"
                        " or leave --model out to use the tiny random BERT")
    print(machine.machine_line(), flush=True)

    with tempfile.TemporaryDirectory(prefix="predict-mem-") as tmp_name:
        tmp = Path(tmp_name)
        if args.model is None:
            helper("--_export", str(tmp), str(tmp / "model.txt"))
        model = args.model or Path((tmp / "model.txt").read_text().strip())
        baseline_dir = baseline_module(args.baseline_rev, tmp) if args.baseline_rows else None
        shown = machine.shown_path(model) if args.model else "tiny random BERT (tests/tiny_model.py)"
        print(f"model {shown}; "
              f"baseline: stages/predict.py at {args.baseline_rev}; threads {args.threads}; "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"{'rows':>9} {'version':>9} {'peak RSS MB':>12} {'(wait4)':>8} {'seconds':>8} "
              f"{'output sha256':>17}")
        for rows in sorted(set(args.rows) | set(args.baseline_rows)):
            src = tmp / f"in-{rows}.parquet"
            helper("--_input", str(src), str(rows))
            results = {}
            kinds = (["baseline"] if rows in args.baseline_rows else []) + \
                (["streaming"] if rows in args.rows else [])
            for kind in kinds:
                r = run(kind, model, src, tmp / f"out-{kind}-{rows}.csv", baseline_dir,
                        args.threads)
                results[kind] = r
                print(f"{rows:>9} {kind:>9} {r['peak_rss_mb']:>12.0f} "
                      f"{r['wait4_maxrss_mb']:>8.0f} {r['seconds']:>8.1f} {r['sha256']:>17}",
                      flush=True)
            if len(results) == 2:
                helper("--_compare", str(tmp / f"out-baseline-{rows}.csv"),
                       str(tmp / f"out-streaming-{rows}.csv"), str(tmp / "cmp.txt"))
                ratio = results["baseline"]["peak_rss_mb"] / results["streaming"]["peak_rss_mb"]
                print(f"{rows:>9} baseline/streaming peak RSS {ratio:.2f}x; outputs: "
                      f"{(tmp / 'cmp.txt').read_text().strip()}", flush=True)
            src.unlink()
            for f in tmp.glob(f"out-*-{rows}.*"):
                f.unlink()


if __name__ == "__main__":
    machine.run_benchmark(main)
