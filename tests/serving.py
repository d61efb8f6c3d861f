"""Helpers for the service tests: a champion laid out as promote leaves it, a real server process,
and out-of-scope detectors fitted on the tiny model's own ONNX embeddings."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO_ROOT, set_params
from tests.helpers import wait_until

# what the atexit hook of the server process prints: the heavy modules it ever imported
MODULE_REPORT = "SERVER-HEAVY-MODULES:"
RUNNER = f"""
import atexit, json, runpy, sys

def report():
    heavy = ("torch", "transformers", "sklearn", "great_expectations", "prefect")
    found = sorted({{m.split(".")[0] for m in sys.modules if m.split(".")[0] in heavy}})
    print({MODULE_REPORT!r}, json.dumps(found), flush=True)

atexit.register(report)
sys.argv = ["serve", *sys.argv[1:]]
runpy.run_module("serve", run_name="__main__", alter_sys=True)
"""
ADMIN_TOKEN = "test-admin-token-123"
# texts made of characters outside the tiny model's vocabulary: [UNK] tokens only, far from every
# training text in its embedding space (the detector fixtures check that they really are)
FAR_TEXTS = ["ΩΨΦ ΣΔΛ ΞΠΘ ЖЩЮ " * 8, "ЖЖЖ ЩЩЩ ΘΘΘ ΛΛΛ ΞΞΞ", "§¶ ж ю ш ~ ^ | " * 10]
UNUSUAL_WORDS = ["ΩΨΦ", "ΣΔΛ", "ΞΠΘ", "ЖЩЮ", "ЖЖЖ", "ЩЩЩ", "ΘΘΘ", "§¶", "жюш", "ΛΛΛ"]


def far_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct texts of 4 to 24 out-of-vocabulary words."""
    import random

    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        text = " ".join(rng.choice(UNUSUAL_WORDS) for _ in range(rng.randint(4, 24)))
        if text not in out:
            out.append(text)
    return out


def onnx_scores(onnx_dir: Path, model_file: str, texts: list[str], arrays: dict, method: str,
                k: int) -> Any:
    """``method``'s out-of-scope scores of ``texts`` from the ONNX model's logits and embeddings."""
    from stages import oos_detector
    from stages.onnx_session import encode, load_onnx_model, run_logits_and_embeddings

    model = load_onnx_model(onnx_dir / model_file, threads=1, device="cpu")
    logits, emb = run_logits_and_embeddings(model, encode(model, texts), batch_size=16)
    return oos_detector.score(method, logits, emb, arrays, k)


def fit_onnx_detector(onnx_dir: Path, out_dir: Path, label: str | None = "out_of_scope",
                      method: str = "knn", k: int = 5, in_scope: Sequence[str] = ()) -> Any:
    """A detector for the tiny model in ``onnx_dir``, fitted on its own ONNX embeddings of
    in-scope texts, written to ``out_dir``. The threshold lies halfway between the highest score
    of in-scope texts (the fitted ones, the test split's, and ``in_scope``) and the lowest of
    :data:`FAR_TEXTS` and :func:`far_texts`, on every precision in ``onnx_dir``: the fixture fails
    unless that gap exists."""
    import numpy as np

    from stages import oos_detector
    from stages.onnx_session import encode, load_onnx_model, run_logits_and_embeddings
    from tests.conftest import make_rows

    fp32 = load_onnx_model(onnx_dir / "model.onnx", threads=1, device="cpu")
    rows, labels = make_rows(12, seed=5)
    _, emb = run_logits_and_embeddings(fp32, encode(fp32, [r["text"] for r in rows]), 16)
    classes = np.array([fp32.labels.index(r["label"]) for r in labels])
    arrays = oos_detector.fit_arrays(emb, classes, len(fp32.labels), bank_rows=1000)
    in_scope = [*in_scope, *(r["text"] for r in rows), *(r["text"] for r in make_rows(30, seed=11)[0])]
    far = FAR_TEXTS + far_texts(150)
    files = [f for f in ("model.onnx", "model.int8.onnx") if (onnx_dir / f).is_file()]
    high = max(onnx_scores(onnx_dir, f, in_scope, arrays, method, k).max() for f in files)
    low = min(onnx_scores(onnx_dir, f, far, arrays, method, k).min() for f in files)
    assert high < low, f"{method}: in-scope scores reach {high}, far texts go down to {low}"
    threshold = float((high + low) / 2)
    detector = oos_detector.Detector(method, {method: threshold}, label, 0.95, k, arrays)
    oos_detector.save(detector, out_dir)
    return detector


def install_champion(root: Path, project: Path, commit: str,
                     tamper: Any = None) -> Path:
    """models/champion (with onnx/ and its reference predictions, written by promote's own
    code from ``project``'s export) and the pointer, in ``root``; ``tamper(onnx_dir)`` may
    damage the files afterwards. The directory is swapped in, then the pointer written, as
    promote does."""
    from commands import promote

    new = root / "models" / f".champion-{commit}.tmp"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    shutil.copy(project / "models/checkpoint/config.json", new / "config.json")
    (new / "metrics.json").write_text(json.dumps({"macro_f1": 0.5, "accuracy": 0.6,
                                                  "test_rows": 48}))
    with contextlib.chdir(project):  # promote reads the test split from the project
        promote.copy_onnx_export(project / "models/onnx", new / "onnx")
    if tamper is not None:
        tamper(new / "onnx")
    champion = root / "models/champion"
    old = root / "models" / ".champion-old.tmp"
    if champion.exists():
        os.replace(champion, old)
    os.replace(new, champion)
    shutil.rmtree(old, ignore_errors=True)
    pointer = {"champion": {"path": "models/champion", "commit": commit,
                            "promoted_at": f"2026-12-01T00:00:{len(commit) % 60:02d}+00:00",
                            "forced": False, "metrics": {"macro_f1": 0.5}}}
    (root / "models/champion.json").write_text(json.dumps(pointer))
    return champion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m serve`` in ``root`` as a subprocess on a free loopback port."""

    def __init__(self, root: Path, admin_token: str | None = ADMIN_TOKEN,
                 **serve_params: Any) -> None:
        self.root, self.admin_token = root, admin_token
        if not (root / "params.yaml").exists():
            shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
        defaults = {"reload_poll_s": 0.2, "log_dir": "logs/predictions", "threads": 1,
                    "flush_interval_s": 60.0, "max_wait_ms": 5}
        set_params(root, {"serve": {**defaults, **serve_params}})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = root / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.stdout = ""

    def start(self, wait_ready: bool = True) -> Server:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("RETRAINER_ADMIN_TOKEN", None)
        if self.admin_token is not None:
            env["RETRAINER_ADMIN_TOKEN"] = self.admin_token
        for attempt in range(5):  # a free port can be taken before the server binds it
            self._stderr = self.stderr_path.open("w")
            self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, "--port", str(self.port)],
                                         cwd=self.root, env=env, stdout=subprocess.PIPE,
                                         stderr=self._stderr, text=True)
            try:
                self.wait_for("/healthz")
                break
            except AssertionError:
                if attempt == 4 or "address already in use" not in self.log():
                    raise
                self.proc.communicate()
                self._stderr.close()
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        if wait_ready:
            self.wait_for("/readyz")
        return self

    def wait_for(self, path: str, timeout_s: float = 60.0) -> httpx.Response:
        def answered() -> httpx.Response | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(self.url + path, timeout=5)
                if response.status_code == 200:
                    return response
            return None

        return wait_until(answered, timeout_s, f"{path} to answer 200", interval_s=0.1,
                          details=self.log)

    def log(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Prometheus samples as {'name{labels}': value}."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.stdout, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stdout, _ = self.proc.communicate()
        self._stderr.close()
        return self.proc.returncode

    def heavy_modules(self) -> list[str]:
        line = next(line for line in self.stdout.splitlines() if line.startswith(MODULE_REPORT))
        return json.loads(line.removeprefix(MODULE_REPORT))

    def __enter__(self) -> Server:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent); labels must match exactly those given."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == want:
            return value
    return 0.0
