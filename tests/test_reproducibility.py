"""A fresh clone reproduces the same bytes, and a team shares them through a real DVC remote.

Real git, real DVC, the tiny model: two clones of one commit each run `dvc repro` and must agree
byte for byte on every artifact except the benchmark's timings and the training timings; then one
clone pushes to a WebDAV server on 127.0.0.1 and a third clone pulls and is up to date without
re-running anything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_PIPELINE, dvc, make_pipeline_repo, set_params, use_remote
from tests.helpers import git

# what is allowed to differ between two runs of the same commit: timings, and nothing else
# (label_audit.json carries the audit's wall time; its suspects and reports are compared below)
VOLATILE = {"metrics/train.json", "metrics/export.json", "plots/latency.csv", "plots/latency.png",
            "metrics/label_audit.json"}
ARTIFACTS = ["data/predictions/test.parquet", "data/label_audit/suspects.parquet",
             "reports/label_audit.md", "reports/label_audit.html", "models/onnx/model.onnx",
             "models/onnx/model.int8.onnx", "models/onnx/labels.json", "models/onnx/oos.json",
             "models/onnx/oos.npz",
             "reports/validation/raw/results.json", "reports/validation/splits/results.json"]


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The project at one commit, with a gate the tiny random model passes."""
    repo = make_pipeline_repo(tmp_path_factory.mktemp("origin"), tiny_model_dir)
    set_params(repo, TINY_PIPELINE)
    git(repo, "commit", "-qam", "thresholds the tiny random model can pass")
    return repo


def clone(origin: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(dest)], check=True)
    return dest


def lock_entries(repo: Path) -> dict[str, str]:
    """'stage:path' -> md5 for every dep and out in dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    out = {}
    for stage, entry in lock["stages"].items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []):
                out[f"{stage}:{item['path']}"] = item.get("md5")
    return out


def changed_files(repo: Path) -> set[str]:
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                            check=True, capture_output=True, text=True).stdout
    return {line[3:] for line in status.splitlines()}


@pytest.mark.slow
def test_two_clones_of_one_commit_reproduce_the_same_bytes(origin: Path, tmp_path: Path) -> None:
    first, second = clone(origin, tmp_path / "first"), clone(origin, tmp_path / "second")
    for repo in (first, second):
        dvc(repo, "repro")
    a, b = lock_entries(first), lock_entries(second)
    assert a.keys() == b.keys()
    differ = sorted(k for k in a if a[k] != b[k])
    assert all(k.split(":", 1)[1] in VOLATILE for k in differ), differ
    for rel in ARTIFACTS + [str(p.relative_to(first)) for p in
                            sorted((first / "models/checkpoint").iterdir())]:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    # what git sees change after the run is the same in both, and no machine path leaks in
    assert changed_files(first) == changed_files(second)
    for rel in changed_files(first) - VOLATILE - {"dvc.lock"}:  # dvc.lock: entry by entry above
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    for rel in ["dvc.lock", "models/checkpoint/manifest.json", *sorted(changed_files(first))]:
        path = first / rel
        if path.is_file() and path.suffix in (".json", ".lock", ".md", ".csv", ".yaml"):
            assert str(tmp_path) not in path.read_text(errors="replace"), rel


@pytest.mark.slow
def test_a_pushed_run_is_pulled_into_a_fresh_clone_without_retraining(
        origin: Path, tmp_path: Path, webdav_remote) -> None:
    producer = clone(origin, tmp_path / "producer")
    dvc(producer, "repro")
    use_remote(producer, webdav_remote)
    git(producer, "add", "-A")
    git(producer, "commit", "-qm", "pipeline results and the team remote")
    config = (producer / ".dvc/config").read_text()
    assert webdav_remote.url in config and webdav_remote.password not in config
    assert "config.local" not in git(producer, "ls-files", ".dvc")  # credentials stay local
    pushed = dvc(producer, "push")
    assert "pushed" in pushed.stdout
    assert any(p.is_file() for p in webdav_remote.root.rglob("*"))

    consumer = clone(producer, tmp_path / "consumer")
    use_remote(consumer, webdav_remote, add=False)
    dvc(consumer, "pull")
    assert "Data and pipelines are up to date." in dvc(consumer, "status").stdout
    repro = dvc(consumer, "repro")
    assert "Running stage" not in repro.stdout, repro.stdout
    assert "Data and pipelines are up to date." in repro.stdout
    for rel in ("models/checkpoint/model.safetensors", "models/onnx/model.int8.onnx"):
        assert (consumer / rel).read_bytes() == (producer / rel).read_bytes()
    # the remote is in sync with what the producer has
    cloud = dvc(producer, "status", "--cloud")
    assert "in sync" in cloud.stdout, cloud.stdout
