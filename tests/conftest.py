"""Shared fixtures: a tiny random BERT, tiny labelled datasets and a throw-away pipeline repo."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.helpers import REPO_ROOT, git, git_identity_env, run_module

os.environ.update({
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
})

INTENTS = {
    "refund_request": ["i want my money back for order {n}", "please refund the {n} charge",
                       "refund my order {n} it was charged twice"],
    "cancel_subscription": ["cancel my subscription {n} please", "stop my plan renew {n}",
                            "i want to cancel the subscription before it renews on day {n}"],
    "delivery_status": ["where is my package {n}", "my parcel has not arrived since {n} days",
                        "tracking says shipped but no delivery {n}"],
    "login_problem": ["cant log in to my account since {n}", "password reset email never arrives {n}",
                      "my account is locked after {n} tries"],
    "payment_failed": ["my card was declined {n} times", "payment failed again at checkout for order {n}",
                       "the bank transaction failed {n}"],
    "change_address": ["change my address to {n} new street", "i moved to {n} please update my address",
                       "wrong address on order {n} please change it"],
}


def make_rows(n_per_class: int, seed: int = 0, intents: dict | None = None) -> tuple[list, list]:
    """Texts and labels rows (lists of dicts) with ``n_per_class`` distinct texts per class."""
    rng = random.Random(seed)
    texts, labels = [], []
    for label, templates in sorted((intents or INTENTS).items()):
        for k in range(n_per_class):
            i = len(texts) + 1
            text = templates[k % len(templates)].format(n=rng.randint(10, 99999))
            texts.append({"id": f"t{i:05d}", "text": text,
                          "source": "app_review" if k % 10 == 0 else "email"})
            labels.append({"id": f"t{i:05d}", "label": label})
    return texts, labels


def write_csv(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_model import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_st_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved as a sentence-transformers model that pools by mean."""
    from tests.tiny_model import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-st-bert"), pooling="mean")


# who commits when a flow (its run branch, promotion) makes a commit in a test
FLOW_GIT_IDENTITY = git_identity_env("retrain-test", "retrain@example.com")


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One ephemeral Prefect server (SQLite in a temp dir) for every flow test of the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                           "DO_NOT_TRACK": "1", **FLOW_GIT_IDENTITY}.items():
            mp.setenv(key, value)
        mp.delenv("PREFECT_API_URL", raising=False)
        from prefect.settings import PREFECT_HOME, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        with temporary_settings({PREFECT_HOME: home}), prefect_test_harness(
                server_startup_timeout=180):
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                yield client


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with the project's params.yaml, as a stage sees it."""
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def set_params(root: Path, overrides: dict[str, dict]) -> None:
    """Merge ``{section: {key: value}}`` into root/params.yaml (one level deep per section)."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m stages.<name>`` the way DVC does, capturing its output."""
    return run_module(f"stages.{name}", cwd, *args)


def run_command(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m commands.<name>`` (promote, predict, ...), capturing its output."""
    return run_module(f"commands.{name}", cwd, *args)


def git_files() -> list[str]:
    """The repository's files as a clone would have them (tracked + new, not ignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (REPO_ROOT / f).is_file()]


# what a full `dvc repro` on the tiny random model needs: it cannot reach the real floors, and
# int8 flips many of its near-tied predictions and moves its out-of-scope scores across the
# threshold (the gate and quantize logic have their own tests)
TINY_PIPELINE = {"gate": {"min_macro_f1": 0.0, "min_accuracy": 0.0, "min_class_recall": 0.0,
                          "tfidf_margin": -1.0},
                 "quantize": {"min_agreement": 0.5, "max_f1_drop": 100.0, "min_oos_agreement": 0.0},
                 "benchmark": {"batch1_texts": 10, "batches": 1, "warmup": 1}}

TINY_TRAIN = {"epochs": 2, "batch_size": 16, "max_length": 32, "learning_rate": 1e-3,
              "log_every": 2}


def write_tiny_splits(root: Path, tiny_model_dir: Path, **train: Any) -> Path:
    """Train/val/test splits of the tiny data (12 rows a class) under ``root``, and params
    pointing train at the tiny model (``train`` overrides TINY_TRAIN)."""
    import pandas as pd

    texts, labels = make_rows(12)
    df = pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")
    (root / "data/splits").mkdir(parents=True)
    for name, part in (("train", df.iloc[::2]), ("val", df.iloc[1::4]), ("test", df.iloc[3::4])):
        part.reset_index(drop=True).to_parquet(root / f"data/splits/{name}.parquet")
    set_params(root, {"train": {"base_model": str(tiny_model_dir), **TINY_TRAIN, **train},
                      "label_audit": {"encoder": str(tiny_model_dir)}})
    return root


@pytest.fixture
def split_dir(workdir: Path, tiny_model_dir: Path) -> Path:
    """A workdir with train/val/test splits and params pointing at the tiny model."""
    return write_tiny_splits(workdir, tiny_model_dir)


@pytest.fixture
def pipeline_repo(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A fresh git + DVC repository holding this project, set up for the tiny model and data.

    Real git, real DVC: tests run `dvc repro` in it as a user would in a clone.
    """
    return make_pipeline_repo(tmp_path, tiny_model_dir)


def make_pipeline_repo(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """The body of the `pipeline_repo` fixture, for fixtures of a wider scope."""
    repo = tmp_path / "repo"
    for rel in git_files():
        if rel.startswith(("data/sample/", "docs/", "benchmarks/")):
            continue
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, dest)
    texts, labels = make_rows(20)
    write_csv(repo / "data/sample/texts.csv", texts)
    write_csv(repo / "data/sample/labels.csv", labels)
    # the tiny data has ~20 test rows: allow a champion comparison on that few
    set_params(repo, {"train": {"base_model": str(tiny_model_dir), **TINY_TRAIN},
                      "label_audit": {"encoder": str(tiny_model_dir)},
                      "gate": {"min_paired_rows": 5}})
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the venv's dvc in ``repo`` with the project on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(repo),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_SITE_CACHE_DIR": str(repo.parent / "dvc-site-cache")}
    exe = Path(sys.executable).with_name("dvc")
    proc = subprocess.run([str(exe), *args], cwd=repo, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def webdav_remote(tmp_path: Path) -> SimpleNamespace:
    """A real WebDAV server (WsgiDAV on cheroot) on 127.0.0.1, with basic auth: a DVC remote.

    Yields its ``url`` (a ``webdav://`` DVC remote URL), ``user``, ``password`` and ``root`` (the
    directory it serves). Stopped after the test.
    """
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    root = tmp_path / "webdav-root"
    (root / "dvc-store").mkdir(parents=True)  # the remote's folder, as an admin would create it
    user, password = "team", secrets.token_hex(12)
    app = WsgiDAVApp({
        "provider_mapping": {"/": str(root)},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "verbose": 0, "logging": {"enable": False},
    })
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=8)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    port = server.bind_addr[1]
    yield SimpleNamespace(url=f"webdav://127.0.0.1:{port}/dvc-store", user=user,
                          password=password, root=root)
    server.stop()
    thread.join(timeout=10)


def use_remote(repo: Path, remote: SimpleNamespace, add: bool = True) -> None:
    """Make ``remote`` the default DVC remote of ``repo`` (committed config), with the credentials
    only in .dvc/config.local, which git ignores, as a team member would set them."""
    if add:
        dvc(repo, "remote", "add", "-d", "team", remote.url)
    dvc(repo, "remote", "modify", "--local", "team", "user", remote.user)
    dvc(repo, "remote", "modify", "--local", "team", "password", remote.password)
