"""Load test of the service on loopback: micro-batching on vs off, 1/8/32 clients, a reload.

    .venv/bin/python benchmarks/serve_load.py [--onnx-dir models/onnx] \
        [--test-split data/splits/test.parquet] --seconds 10

(paths relative to the repository root; the defaults are this checkout's export and test split)

Builds a champion in a temporary directory from an exported model (promote's own code writes
its reference predictions), starts ``python -m serve`` as a subprocess for each mode
(``max_batch`` 32 = on, 1 = off; everything else as params.yaml ``serve:`` has it), and
drives it with closed-loop clients (asyncio streams, one keep-alive HTTP/1.1 connection each,
opened before the clock) that send one text per request for ``--seconds`` per level. Both
servers run side by side and each level alternates between them in ``--rounds`` short rounds,
so load from other work on the machine hits both alike. Then a 32-client run with batching on
(2x as long) during which a new champion is promoted and the service told to reload. Prints a
table and the on/off ratios; writes JSON. The load generator runs on the same CPUs as the
server: its CPU time is reported too. First, in-process (no HTTP), what a batch saves in
ONNX Runtime alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

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


def compute_per_text(onnx_dir: Path, texts: list[str], threads: int | None) -> dict[str, Any]:
    """What a batch saves in ONNX Runtime alone (no HTTP): int8 texts/s and CPU ms per text for
    one text per call, and for calls formed as the batcher forms them (oldest text plus similar
    lengths, ``serve.max_pad_share``) from a queue of 32; each with 1 and 2 calls at once."""
    import threading
    from types import SimpleNamespace

    from serve.batcher import Text, select_call
    from serve.params import load_serve_params
    from stages.onnx_session import encode, load_onnx_model, pad

    share = load_serve_params(ROOT / "params.yaml").max_pad_share
    model = load_onnx_model(onnx_dir / "model.int8.onnx", threads=threads, device="cpu",
                            spinning=False)
    encodings = encode(model, texts)
    job = SimpleNamespace(model=model)
    out: dict[str, Any] = {"texts": len(texts), "threads_per_call": threads, "max_pad_share": share}
    for name, max_batch in (("one_text_per_call", 1), ("batcher_calls", 32)):
        calls, queue = [], [Text(job, i, len(e.ids)) for i, e in enumerate(encodings)]
        while queue:
            call = select_call(queue[:32], max_batch, share)
            chosen = {id(t) for t in call}
            queue = [t for t in queue if id(t) not in chosen]
            calls.append(pad(model, [encodings[t.index] for t in call]))
        model.session.run(None, calls[0])
        for concurrent in (1, 2):
            def work(k: int, concurrent: int = concurrent, calls: list = calls) -> None:
                for feeds in calls[k::concurrent]:
                    model.session.run(None, feeds)
            workers = [threading.Thread(target=work, args=(k,)) for k in range(concurrent)]
            wall, cpu = time.perf_counter(), time.process_time()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            out[f"{name}/{concurrent}_at_once"] = {
                "texts_per_s": round(len(texts) / wall, 1),
                "cpu_ms_per_text": round(cpu * 1000 / len(texts), 2),
                "texts_per_call": round(len(texts) / len(calls), 2)}
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


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: the load generator's client.

    A bare request/response loop (like wrk) rather than httpx: on 2 shared cores httpx's own
    CPU per request (~1 ms) would be taken from the server being measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(),
                                                               len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def run_level(url: str, texts: list[str], clients: int, seconds: float,
                    during: Any = None) -> dict[str, Any]:
    """Closed-loop clients for ``seconds``; ``during`` (a coroutine function) runs alongside.
    Connections are opened before the clock starts, so the figures hold no connection set-up."""
    host, port = url.removeprefix("http://").split(":")
    bodies = [json.dumps({"texts": [t]}).encode() for t in texts]
    latencies: list[float] = []
    errors: list[str] = []
    versions: dict[str, int] = {}
    connections = [Connection(host, int(port)) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in connections))

    async def client(i: int, connection: Connection, stop_at: float) -> None:
        k = i
        while time.monotonic() < stop_at:
            k += clients
            start = time.perf_counter()
            try:
                status, body = await connection.post("/v1/predict", bodies[k % len(bodies)])
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(repr(exc))
                await connection.close()
                await connection.open()
                continue
            elapsed = time.perf_counter() - start
            if status != 200:
                errors.append(f"HTTP {status}: {body[:200]!r}")
                continue
            latencies.append(elapsed)
            v = json.loads(body)["model_version"]
            versions[v] = versions.get(v, 0) + 1

    start = time.perf_counter()
    stop_at = time.monotonic() + seconds
    tasks = [asyncio.create_task(client(i, c, stop_at)) for i, c in enumerate(connections)]
    extra = await during() if during else None
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in connections))
    return {"latencies": latencies, "errors": errors, "versions": versions,
            "wall_s": wall, "reload": extra}


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


def run_async(coroutine: Any) -> Any:
    """On uvloop when installed (as the service runs): the cheaper loop leaves more CPU to it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


MODES = (("batching_off", 1), ("batching_on", 32))  # serve.max_batch


def measure(proc: subprocess.Popen, url: str, texts: list[str], clients: int, seconds: float,
            usage: dict[str, Any], during: Any = None) -> dict[str, Any]:
    """One round against one server; adds its CPU time and ONNX calls to ``usage``."""
    cpu0, batches0 = cpu_seconds(proc.pid), batch_stats(url)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    usage["load"].append(os.getloadavg()[0])
    run = run_async(run_level(url, texts, clients, seconds, during))
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


def plot(results: dict[str, Any], clients: list[int], png: Path) -> None:
    """Throughput and p50/p99 latency by clients, batching on vs off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for colour, (mode, _) in enumerate(MODES):
        rows = [results["levels"][f"{mode}/{c}"] for c in clients]
        label, c = mode.replace("_", " "), f"C{colour}"
        left.plot(clients, [r["throughput_rps"] for r in rows], marker="o", color=c, label=label)
        right.plot(clients, [r["p50_ms"] for r in rows], marker="o", color=c, label=f"{label}, p50")
        right.plot(clients, [r["p99_ms"] for r in rows], marker="s", linestyle="--", color=c,
                   label=f"{label}, p99")
    right.axhline(150, color="grey", linewidth=0.8, linestyle=":", label="p99 target (150 ms)")
    left.set(title="throughput", xlabel="concurrent clients (one text per request)",
             ylabel="requests / s", xscale="log", xticks=clients, xticklabels=clients)
    right.set(title="latency", xlabel="concurrent clients", ylabel="ms", xscale="log",
              xticks=clients, xticklabels=clients)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("python -m serve, MiniLM int8: micro-batching on (max_batch 32) vs off (1)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx-dir", type=Path, default=ROOT / "models/onnx",
                        help="the exported model (default: models/onnx of this checkout)")
    parser.add_argument("--test-split", type=Path, default=ROOT / "data/splits/test.parquet",
                        help="texts to send (default: data/splits/test.parquet of this checkout)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per level (bounded)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, help="serve.workers (default: params.yaml)")
    parser.add_argument("--threads", type=int, help="serve.threads (default: params.yaml)")
    parser.add_argument("--max-wait-ms", type=float, help="serve.max_wait_ms (default: params.yaml)")
    parser.add_argument("--precision", choices=["int8", "fp32"],
                        help="serve.precision (default: params.yaml). Dynamic int8 runs a text "
                        "per call whatever max_batch says; fp32 shows what batching does")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternations between the two servers per level")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_load.json")
    args = parser.parse_args()
    machine.require(args.onnx_dir / "model.int8.onnx", "the exported model",
                    "run `dvc repro quantize` in this checkout, or pass --onnx-dir DIR")
    machine.require(args.test_split, "the test split",
                    "run `dvc repro split` in this checkout, or pass --test-split FILE (Parquet, `text`)")
    facts = machine.machine_facts()
    print(machine.machine_line(facts), flush=True)

    import pandas as pd

    from serve.client import request_reload
    from serve.params import load_serve_params

    # the service as params.yaml configures it; the two modes differ only in serve.max_batch
    serve = asdict(load_serve_params(ROOT / "params.yaml"))
    serve.update({k: v for k, v in {"workers": args.workers, "threads": args.threads,
                                    "max_wait_ms": args.max_wait_ms,
                                    "precision": args.precision}.items() if v is not None})

    texts = pd.read_parquet(args.test_split)["text"].astype(str).tolist()
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    results: dict[str, Any] = {"load_before": os.getloadavg(), "levels": {}}
    print(f"building the champion from {machine.shown_path(args.onnx_dir)} in {work}", flush=True)
    promote_champion(work, build_champion(work, args.onnx_dir, args.test_split, FIRST), FIRST)
    # the champion promoted during the 32-client run: built now, so only the swap and the
    # service's own load/warm/parity work overlap with the load
    second = build_champion(work, args.onnx_dir, args.test_split, SECOND)
    results["batch_effect"] = batch_effect(args.onnx_dir, texts[:256])
    print("probabilities alone vs in batches of 32 (unsorted):", results["batch_effect"],
          flush=True)
    results["compute_per_text"] = compute_per_text(args.onnx_dir, (texts * 4)[:1024],
                                                   serve["threads"])
    print("ONNX Runtime alone, int8:", results["compute_per_text"], flush=True)
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        # both servers run side by side; levels alternate between them in short rounds, so
        # drifting load from other work on the machine hits both modes alike
        for mode, max_batch in MODES:
            servers[mode] = start_server(work, {
                **serve, "max_batch": max_batch, "reload_poll_s": 0,
                "log_dir": str(work / "logs" / mode), "flush_interval_s": 10.0})
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
        results["setup"] = {
            "onnx_dir": machine.shown_path(args.onnx_dir), "seconds_per_level": args.seconds,
            "serve": {k: serve[k] for k in ("workers", "threads", "ort_spinning", "max_wait_ms",
                                            "max_pad_share", "precision")},
            "rounds": args.rounds, "machine": facts, "load_after": os.getloadavg()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        plot(results, args.clients, args.out.with_suffix(".png"))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    machine.run_benchmark(main)
