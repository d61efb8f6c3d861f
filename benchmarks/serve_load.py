"""Load test of the service on loopback: micro-batching on vs off, 1/8/32 clients, a reload.

    .venv/bin/python benchmarks/serve_load.py --onnx-dir /work/main/models/onnx \
        --test-split /work/main/data/splits/test.parquet --seconds 10

Builds a champion in a temporary directory from an exported model (promote's own code writes
its reference predictions), starts ``python -m serve`` as a subprocess for each mode
(``max_batch`` 32 = on, 1 = off; everything else the same), and drives it with closed-loop
clients (asyncio + httpx, one keep-alive connection each) that send one text per request for
``--seconds`` per level. Both servers run side by side and each level alternates between them in
``--rounds`` short rounds, so load from other work on the machine hits both alike. Then a
32-client run with batching on (2x as long) during which a new champion is promoted and the
service told to reload. Prints a table and the on/off ratios; writes JSON.
The load generator runs on the same CPUs as the server: its CPU time is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "benchmark-admin-token"
FIRST, SECOND = "0000benchaaa", "0000benchbbb"  # the pointer's commit (12 chars go in the version)


def build_champion(workdir: Path, onnx_dir: Path, test_split: Path, commit: str) -> Path:
    """A champion directory as promote lays it out (reference predictions by promote's own code),
    beside ``workdir``/models/champion; :func:`promote_champion` swaps it in."""
    from commands import promote

    new = workdir / "models" / f".new-{commit}"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    (new / "config.json").write_text("{}")
    (new / "metrics.json").write_text("{}")
    (workdir / "data/splits").mkdir(parents=True, exist_ok=True)
    shutil.copy(test_split, workdir / "data/splits/test.parquet")
    with contextlib.chdir(workdir):
        promote.copy_onnx_export(onnx_dir, new / "onnx")
    return new


def promote_champion(workdir: Path, new: Path, commit: str) -> None:
    """Swap the directory in, then write the pointer (promote's order)."""
    champion = workdir / "models/champion"
    old = workdir / "models/.old"
    if champion.exists():
        os.replace(champion, old)
    os.replace(new, champion)
    shutil.rmtree(old, ignore_errors=True)
    (workdir / "models/champion.json").write_text(json.dumps(
        {"champion": {"path": "models/champion", "commit": commit,
                      "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}}))


def batch_effect(onnx_dir: Path, texts: list[str], batch: int = 32) -> dict[str, Any]:
    """Dynamic int8 quantizes activations per batch: how far a text's probabilities move when it
    shares a call with others (padded to the longest) instead of running alone."""
    import numpy as np

    from stages.metrics import softmax
    from stages.onnx_session import encode, load_onnx_model, run_logits

    out: dict[str, Any] = {"texts": len(texts), "batch": batch}
    for name in ("model.int8.onnx", "model.onnx"):
        model = load_onnx_model(onnx_dir / name, threads=2, device="cpu", spinning=False)
        encodings = encode(model, texts)
        alone = softmax(run_logits(model, encodings, batch_size=1))
        together = softmax(run_logits(model, encodings, batch_size=batch, sort_by_length=False))
        out[name] = {"max_abs_prob_diff": round(float(np.abs(alone - together).max()), 7),
                     "mean_abs_prob_diff": round(float(np.abs(alone - together).mean()), 7),
                     "label_agreement": round(float((alone.argmax(1) == together.argmax(1))
                                                    .mean()), 5)}
    return out


def spinning_effect(onnx_dir: Path, texts: list[str], threads: int) -> dict[str, Any]:
    """ONNX Runtime's default thread pool busy-waits between ops: on cores shared with other
    work that spin competes with it. int8 calls in this process: one text, spinning on and off;
    and length-sorted batches of 16 (what a batch saves per text, without HTTP)."""
    from stages.onnx_session import encode, load_onnx_model, pad

    out: dict[str, Any] = {"threads": threads, "texts": len(texts)}
    for spinning, batch in ((True, 1), (False, 1), (False, 16)):
        model = load_onnx_model(onnx_dir / "model.int8.onnx", threads=threads, device="cpu",
                                spinning=spinning)
        encodings = sorted(encode(model, texts), key=lambda e: len(e.ids))  # batches: similar lengths
        model.session.run(None, pad(model, encodings[:1]))
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(encodings), batch):
            model.session.run(None, pad(model, encodings[i:i + batch]))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out[f"{'spinning' if spinning else 'no_spinning'}_batch{batch}"] = {
            "texts_per_s": round(len(texts) / wall, 1),
            "cpu_ms_per_text": round(cpu * 1000 / len(texts), 2)}
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(workdir: Path, serve: dict[str, Any]) -> tuple[subprocess.Popen, str]:
    import httpx
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["serve"].update(serve)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RETRAINER_ADMIN_TOKEN": TOKEN,
           "RETRAINER_LOG_LEVEL": "WARNING"}
    log_path = workdir / f"server-{serve['max_batch']}.log"
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "serve", "--port", str(port)], cwd=workdir,
                            env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log_path.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return proc, url
        time.sleep(0.2)
    raise SystemExit("server not ready after 180 s")


async def run_level(url: str, texts: list[str], clients: int, seconds: float,
                    during: Any = None) -> dict[str, Any]:
    """Closed-loop clients for ``seconds``; ``during`` (a coroutine function) runs alongside."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    versions: dict[str, int] = {}
    stop_at = time.monotonic() + seconds

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            k = i
            while time.monotonic() < stop_at:
                k += clients
                start = time.perf_counter()
                try:
                    r = await http.post("/v1/predict", json={"texts": [texts[k % len(texts)]]})
                    elapsed = time.perf_counter() - start
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                    latencies.append(elapsed)
                    v = r.json()["model_version"]
                    versions[v] = versions.get(v, 0) + 1
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    start = time.perf_counter()
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    extra = await during() if during else None
    await asyncio.gather(*tasks)
    return {"latencies": latencies, "errors": errors, "versions": versions,
            "wall_s": time.perf_counter() - start, "reload": extra}


def summarise(runs: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """One row from several rounds of the same level."""
    lat = sorted(x for r in runs for x in r["latencies"])
    errors = [e for r in runs for e in r["errors"]]
    wall = sum(r["wall_s"] for r in runs)
    versions: dict[str, int] = {}
    for r in runs:
        for v, n in r["versions"].items():
            versions[v] = versions.get(v, 0) + n

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else float("nan")

    return {"clients": clients, "requests": len(lat), "errors": len(errors),
            "error_samples": errors[:5], "wall_s": round(wall, 2),
            "throughput_rps": round(len(lat) / wall, 1), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
            "versions": versions, "reload": next((r["reload"] for r in runs if r["reload"]), None)}


def batch_stats(url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith(("serve_batch_size_sum", "serve_batch_size_count")):
            key, value = line.split(" ")
            out[key] = float(value)
    return out


MODES = (("batching_off", 1), ("batching_on", 32))  # serve.max_batch


def measure(proc: subprocess.Popen, url: str, texts: list[str], clients: int, seconds: float,
            usage: dict[str, Any], during: Any = None) -> dict[str, Any]:
    """One round against one server; adds its CPU time and ONNX calls to ``usage``."""
    cpu0, batches0 = cpu_seconds(proc.pid), batch_stats(url)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    usage["load"].append(os.getloadavg()[0])
    run = asyncio.run(run_level(url, texts, clients, seconds, during))
    self1, batches1 = resource.getrusage(resource.RUSAGE_SELF), batch_stats(url)
    usage["server_cpu_s"] += cpu_seconds(proc.pid) - cpu0
    usage["loadgen_cpu_s"] += (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
    usage["calls"] += batches1["serve_batch_size_count"] - batches0["serve_batch_size_count"]
    usage["texts"] += batches1["serve_batch_size_sum"] - batches0["serve_batch_size_sum"]
    return run


def record(results: dict[str, Any], key: str, level: dict[str, Any], usage: dict[str, Any]) -> None:
    level["server_cpu_cores"] = round(usage["server_cpu_s"] / level["wall_s"], 2)
    level["loadgen_cpu_cores"] = round(usage["loadgen_cpu_s"] / level["wall_s"], 2)
    level["texts_per_onnx_call"] = round(usage["texts"] / max(usage["calls"], 1), 2)
    level["load_1min"] = round(statistics.fmean(usage["load"]), 2)
    results["levels"][key] = level
    print(f"{key:22s}: {level['throughput_rps']:7.1f} req/s p50 {level['p50_ms']:7.1f} ms "
          f"p99 {level['p99_ms']:7.1f} ms errors {level['errors']} texts/call "
          f"{level['texts_per_onnx_call']:5.2f} server CPU {level['server_cpu_cores']:.2f} cores, "
          f"loadgen {level['loadgen_cpu_cores']:.2f} (load {level['load_1min']:.1f})", flush=True)
    if level["reload"]:
        answer = level["reload"]["answer"]
        print(f"  reload during the run: {answer['result']} {answer['version']} (took "
              f"{level['reload']['reload_s']} s); versions answered {level['versions']}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx-dir", type=Path, default=Path("/work/main/models/onnx"))
    parser.add_argument("--test-split", type=Path,
                        default=Path("/work/main/data/splits/test.parquet"))
    parser.add_argument("--seconds", type=float, default=10.0, help="per level (bounded)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2, help="serve.threads")
    parser.add_argument("--max-wait-ms", type=float, default=0.0,
                        help="serve.max_wait_ms of the batching server")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternations between the two servers per level")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_load.json")
    args = parser.parse_args()

    import httpx
    import pandas as pd

    from serve.client import request_reload

    texts = pd.read_parquet(args.test_split)["text"].astype(str).tolist()
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    results: dict[str, Any] = {"load_before": os.getloadavg(), "levels": {}}
    print(f"building the champion from {args.onnx_dir} in {work}", flush=True)
    promote_champion(work, build_champion(work, args.onnx_dir, args.test_split, FIRST), FIRST)
    # the champion promoted during the 32-client run: built now, so only the swap and the
    # service's own load/warm/parity work overlap with the load
    second = build_champion(work, args.onnx_dir, args.test_split, SECOND)
    results["batch_effect"] = batch_effect(args.onnx_dir, texts[:256])
    print("probabilities alone vs in batches of 32 (unsorted):", results["batch_effect"],
          flush=True)
    results["ort_spinning_effect"] = spinning_effect(args.onnx_dir, texts[:128], args.threads)
    print("int8 calls, ORT spinning on/off, batch 1/16:", results["ort_spinning_effect"],
          flush=True)
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        # both servers run side by side; levels alternate between them in short rounds, so
        # drifting load from other work on the machine hits both modes alike
        for mode, max_batch in MODES:
            servers[mode] = start_server(work, {
                "max_batch": max_batch, "threads": args.threads, "max_wait_ms": args.max_wait_ms,
                "reload_poll_s": 0, "log_dir": str(work / "logs" / mode),
                "flush_interval_s": 10.0})
        for clients in args.clients:
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode, _ in MODES}
            usage = {mode: {"server_cpu_s": 0.0, "loadgen_cpu_s": 0.0, "calls": 0.0,
                            "texts": 0.0, "load": []} for mode, _ in MODES}
            for _ in range(args.rounds):
                for mode, _ in MODES:
                    proc, url = servers[mode]
                    runs[mode].append(measure(proc, url, texts, clients,
                                              args.seconds / args.rounds, usage[mode]))
            for mode, _ in MODES:
                record(results, f"{mode}/{clients}", summarise(runs[mode], clients), usage[mode])

        # a promotion during a 32-client run with batching on: no request may fail
        proc, url = servers["batching_on"]
        clients = max(args.clients)

        async def promote_and_reload() -> dict[str, Any]:
            await asyncio.sleep(args.seconds / 2)
            promote_champion(work, second, SECOND)
            t1 = time.perf_counter()
            answer = await asyncio.to_thread(request_reload, url, TOKEN)
            return {"reload_s": round(time.perf_counter() - t1, 2), "answer": answer}

        usage = {"server_cpu_s": 0.0, "loadgen_cpu_s": 0.0, "calls": 0.0, "texts": 0.0, "load": []}
        run = measure(proc, url, texts, clients, args.seconds * 2, usage, promote_and_reload)
        record(results, f"batching_on/{clients}+reload", summarise([run], clients), usage)
        results["ratios_on_over_off"] = {
            str(c): round(results["levels"][f"batching_on/{c}"]["throughput_rps"] /
                          results["levels"][f"batching_off/{c}"]["throughput_rps"], 2)
            for c in args.clients}
        print("throughput ratio batching on / off:", results["ratios_on_over_off"])
        import onnxruntime

        results["setup"] = {
            "onnx_dir": str(args.onnx_dir), "seconds_per_level": args.seconds,
            "threads": args.threads, "max_wait_ms": args.max_wait_ms, "rounds": args.rounds,
            "cpus": os.cpu_count(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "httpx": httpx.__version__, "machine": platform.processor() or platform.machine(),
            "load_after": os.getloadavg()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
