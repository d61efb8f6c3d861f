"""Measure what the ONNX export and int8 quantization buy: latency, throughput and size.

Times PyTorch fp32, ONNX Runtime fp32 and int8 (plus CUDA rows on a GPU) on the same token ids,
model call only, each runtime alone in a fresh process. Writes metrics/export.json,
plots/latency.csv and plots/latency.png; targets are reported, not enforced.
More: docs/onnx.md.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from stages import artifacts
from stages.common import (
    NonNegativeInt,
    PositiveInt,
    StageError,
    get_logger,
    load_params,
    params_section,
    progress,
)
from stages.io import write_csv, write_json
from stages.plots import save_png

log = get_logger(__name__)

TORCH, ORT_FP32, ORT_INT8 = "pytorch fp32", "onnxruntime fp32", "onnxruntime int8"
TARGET_SPEEDUP, TARGET_SIZE_RATIO = 2.5, 3.5


@params_section("benchmark")
@dataclass
class BenchmarkParams:
    threads: PositiveInt = 2                  # intra-op CPU threads for every runtime (stated in output)
    batch1_texts: PositiveInt = 200           # texts timed one at a time (p50/p95 latency)
    batch_size: PositiveInt = 32              # batch size of the throughput measurement
    batches: PositiveInt = 5                  # batches timed for throughput
    warmup: NonNegativeInt = 10                  # untimed batch-1 calls per runtime (plus one full batch)
    seed: int = 0
    cuda: Literal["auto", "off"] = "auto"   # auto: add CUDA rows when a GPU is present


Runner = Callable[[dict[str, Any]], Any]


def torch_runner(model: Any, device: str) -> Runner:
    import torch

    def run(feeds: dict[str, Any]) -> Any:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v).to(device) for k, v in feeds.items()}).logits
            return out.cpu()  # includes the device sync, like a real caller

    return run


def ort_runner(session: Any) -> Runner:
    return lambda feeds: session.run(None, feeds)


# runtime -> (kind, device); the CUDA rows are added when a GPU is present
CPU_RUNTIMES = {TORCH: ("torch", "cpu"), ORT_FP32: ("ort fp32", "cpu"), ORT_INT8: ("ort int8", "cpu")}


def runtimes(params: BenchmarkParams) -> dict[str, tuple[str, str]]:
    from stages.onnx_session import gpu_present

    found = dict(CPU_RUNTIMES)
    if params.cuda == "auto" and gpu_present():
        found["onnxruntime fp32 (cuda)"] = ("ort fp32", "cuda")
        found["pytorch fp32 (cuda)"] = ("torch", "cuda")
    return found


def model_size_mb(kind: str) -> float:
    if kind == "torch":
        return sum(p.stat().st_size for p in artifacts.CHECKPOINT_DIR.glob("*.safetensors")) / 1e6
    return (artifacts.ONNX_INT8_PATH if kind == "ort int8" else artifacts.ONNX_FP32_PATH).stat().st_size / 1e6


def build_runner(kind: str, device: str, threads: int) -> Runner:
    """One runtime's callable on numpy feeds: built inside the process that times it."""
    if kind == "torch":
        import torch

        from stages.model import load_classifier

        torch.set_num_threads(threads)
        model, _ = load_classifier(artifacts.CHECKPOINT_DIR, device)
        return torch_runner(model, device)
    from stages.onnx_session import create_session

    path = artifacts.ONNX_INT8_PATH if kind == "ort int8" else artifacts.ONNX_FP32_PATH
    return ort_runner(create_session(path, threads if device == "cpu" else None, device=device))


def time_alone(kind: str, device: str, work: dict[str, Any], params: BenchmarkParams) -> dict:
    """Runs in a fresh process: build one runtime, warm it up, time batch 1 and batch N."""
    import numpy as np

    run = build_runner(kind, device, params.threads)
    for feeds in work["single"][:params.warmup] + work["batched"][:1]:
        run(feeds)
    lat = []
    for feeds in work["single"][params.warmup:]:
        start = time.perf_counter()
        run(feeds)
        lat.append(time.perf_counter() - start)
    rows, spent = 0, 0.0
    for feeds in work["batched"]:
        rows += len(feeds["input_ids"])
        start = time.perf_counter()
        run(feeds)
        spent += time.perf_counter() - start
    return {"p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1e3, 3),
            "throughput_per_s": round(rows / spent, 2)}


def workload(onnx_model: Any, texts: list[str], params: BenchmarkParams) -> dict[str, Any]:
    """Batch-1 feeds and batch-N feeds from the test texts (seeded shuffle, cycled if short)."""
    import numpy as np

    from stages.onnx_session import encode, pad

    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(texts))
    need = max(params.batch1_texts, params.batch_size * params.batches) + params.warmup
    picked = [texts[order[i % len(texts)]] for i in range(need)]
    enc = encode(onnx_model, picked)
    single = [pad(onnx_model, [e]) for e in enc[:params.warmup + params.batch1_texts]]
    batched = [pad(onnx_model, enc[s:s + params.batch_size])
               for s in range(0, params.batch_size * params.batches, params.batch_size)]
    lengths = [len(e.ids) for e in enc[params.warmup:params.warmup + params.batch1_texts]]
    return {"single": single, "batched": batched,
            "tokens_mean": round(float(np.mean(lengths)), 1),
            "tokens_p50": float(np.median(lengths)), "tokens_max": int(max(lengths))}


def measure(found: dict[str, tuple[str, str]], work: dict[str, Any],
            params: BenchmarkParams) -> dict[str, dict[str, float]]:
    """Each runtime alone, in a new process (spawned: nothing inherited), strictly one after
    the other, so no other runtime's thread pool competes for the cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    feeds = {k: work[k] for k in ("single", "batched")}
    results = {}
    for name, (kind, device) in progress(found.items(), desc="runtimes", leave=False):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results[name] = pool.submit(time_alone, kind, device, feeds, params).result()
        log.info("%-26s timed alone: p50 %.2f ms", name, results[name]["p50_ms"])
    return results


def ratios(results: dict[str, dict[str, float]]) -> dict[str, float]:
    t, f, q = results[TORCH], results[ORT_FP32], results[ORT_INT8]
    return {
        "int8_vs_torch_p50_speedup": round(t["p50_ms"] / q["p50_ms"], 3),
        "ort_fp32_vs_torch_p50_speedup": round(t["p50_ms"] / f["p50_ms"], 3),
        "int8_vs_ort_fp32_p50_speedup": round(f["p50_ms"] / q["p50_ms"], 3),
        "int8_vs_torch_throughput_ratio": round(q["throughput_per_s"] / t["throughput_per_s"], 3),
        "int8_vs_torch_size_ratio": round(t["size_mb"] / q["size_mb"], 3),
    }


def environment(params: BenchmarkParams) -> dict[str, Any]:
    import onnxruntime
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cpu_cores_visible": len(os.sched_getaffinity(0)),
            "threads": params.threads,
            "load_average_1m": round(os.getloadavg()[0], 2),  # other work skews timings
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__}


def plot(table: Any, params: BenchmarkParams) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2 + 0.3 * len(table)))
    y = range(len(table))
    ax1.barh(y, table["p50_ms"], color="tab:blue", label="p50")
    ax1.barh(y, table["p95_ms"] - table["p50_ms"], left=table["p50_ms"], color="tab:blue",
             alpha=0.3, label="p95")
    ax1.set(yticks=list(y), yticklabels=table["runtime"], xlabel="ms per text",
            title=f"Latency at batch 1 ({params.threads} threads)")
    ax1.invert_yaxis()
    ax1.legend(loc="lower right")
    ax2.barh(y, table["throughput_per_s"], color="tab:green")
    ax2.set(yticks=list(y), yticklabels=[f"{r} ({s:.0f} MB)" for r, s in
                                          zip(table["runtime"], table["size_mb"], strict=True)],
            xlabel="texts per second", title=f"Throughput at batch {params.batch_size} "
            "(size on disk)")
    ax2.invert_yaxis()
    fig.tight_layout()
    save_png(fig, artifacts.LATENCY_PNG, dpi=120)


def main() -> None:
    import pandas as pd

    from stages.data import load_split

    params = load_params("benchmark", BenchmarkParams)
    for path in (artifacts.ONNX_DIR / "model.onnx", artifacts.ONNX_DIR / "model.int8.onnx"):
        if not path.is_file():
            raise StageError(f"model not found: {path}", fix="run `dvc repro quantize` first")
    texts = load_split("test")["text"].astype(str).tolist()
    if not texts:
        raise StageError("the test split is empty", where=str(artifacts.split_path("test")))
    from stages.onnx_session import load_onnx_model

    found = runtimes(params)
    # the parent only tokenizes: it never runs a model, so it keeps no thread pool busy
    work = workload(load_onnx_model(artifacts.ONNX_INT8_PATH, threads=1, device="cpu"), texts, params)
    log.info("timing %s, each alone in its own process: %d texts at batch 1 (mean %.1f tokens), "
             "%d batches of %d; %d threads", ", ".join(found), params.batch1_texts,
             work["tokens_mean"], params.batches, params.batch_size, params.threads)
    env = environment(params)
    results = measure(found, work, params)
    env["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    for name, r in results.items():
        r["size_mb"] = round(model_size_mb(found[name][0]), 2)
        log.info("%-26s p50 %8.2f ms  p95 %8.2f ms  %8.1f texts/s  %7.1f MB", name, r["p50_ms"],
                 r["p95_ms"], r["throughput_per_s"], r["size_mb"])
    rat = ratios(results)
    report = {
        "environment": env,
        "workload": {k: v for k, v in work.items() if k not in ("single", "batched")}
        | {"texts_batch1": params.batch1_texts, "batch_size": params.batch_size,
           "batches": params.batches, "warmup": params.warmup,
           "timed": "model call only; same token ids for every runtime; each runtime alone "
                    "in its own process, warm-up excluded"},
        "runtimes": results,
        "ratios": rat,
        "targets": {"int8_vs_torch_p50_speedup": {"target": TARGET_SPEEDUP,
                                                  "met": rat["int8_vs_torch_p50_speedup"]
                                                  >= TARGET_SPEEDUP},
                    "int8_vs_torch_size_ratio": {"target": TARGET_SIZE_RATIO,
                                                 "met": rat["int8_vs_torch_size_ratio"]
                                                 >= TARGET_SIZE_RATIO}},
        "params": asdict(params),
    }
    table = pd.DataFrame([{"runtime": n, **r} for n, r in results.items()],
                         columns=["runtime", "p50_ms", "p95_ms", "throughput_per_s", "size_mb"])
    write_json(artifacts.EXPORT_METRICS, report)
    write_csv(artifacts.LATENCY_CSV, table)
    plot(table, params)
    log.info("int8 vs PyTorch: %.2fx faster (p50, batch 1), %.2fx smaller; wrote %s, %s, %s",
             rat["int8_vs_torch_p50_speedup"], rat["int8_vs_torch_size_ratio"], artifacts.EXPORT_METRICS,
             artifacts.LATENCY_CSV, artifacts.LATENCY_PNG)


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.benchmark", __doc__)
