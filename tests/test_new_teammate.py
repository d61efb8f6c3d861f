"""A teammate's fresh clone without `dvc pull`: a champion that git names but the workspace lacks is
reported as such, with the command that fetches it (`dvc pull` from the remote, `dvc checkout` from
a local cache), never "re-promote" or "re-train".

Real git, real DVC, a real WebDAV remote: clone A promotes a champion (as `dvc add` + commit) and
pushes it; clone B is a `git clone` of A, as a teammate gets it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import dvc, use_remote
from tests.helpers import GIT, assert_clear_error, run_module


def a_repo_with_a_champion(pipeline_repo: Path) -> Path:
    """The project after ingest + validate, with a champion (its labels and data profile) DVC-
    tracked and committed, as promote leaves it."""
    repo = pipeline_repo
    for module in ("stages.ingest", "stages.validate"):
        proc = run_module(module, repo)
        assert proc.returncode == 0, proc.stderr
    champion = repo / "models/champion"
    champion.mkdir(parents=True)
    run_module("stages.validate", repo, "--write-profile", champion / "data_profile.json")
    labels = sorted(set(json.loads((repo / "metrics/data.json").read_text())["classes"]))
    (champion / "labels.json").write_text(json.dumps(labels))
    (champion / "config.json").write_text("{}")
    dvc(repo, "add", "models/champion")
    (repo / "models/champion.json").write_text(
        json.dumps({"champion": {"path": "models/champion", "promoted_at": "2026-12-01"}}))
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "promote"], cwd=repo, check=True)
    return repo


@pytest.mark.slow
def test_a_fresh_clone_is_told_to_pull_the_champion(pipeline_repo: Path, webdav_remote,
                                                    tmp_path: Path) -> None:
    repo = a_repo_with_a_champion(pipeline_repo)
    use_remote(repo, webdav_remote)
    subprocess.run([*GIT, "commit", "-qam", "remote"], cwd=repo, check=True)
    dvc(repo, "push")

    clone = tmp_path / "teammate"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    use_remote(clone, webdav_remote, add=False)
    assert not (clone / "models/champion").exists()
    assert run_module("stages.ingest", clone).returncode == 0
    proc = run_module("stages.validate", clone)
    assert_clear_error(proc, "stages.validate",
                       "the champion (models/champion) is not in this workspace",
                       "models/champion", "`dvc pull models/champion.dvc` fetches it from the DVC remote")
    assert "re-promote" not in proc.stderr

    dvc(clone, "pull", "models/champion.dvc")
    proc = run_module("stages.validate", clone)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_a_champion_missing_from_the_workspace_is_checked_out_from_the_cache(
        pipeline_repo: Path) -> None:
    repo = a_repo_with_a_champion(pipeline_repo)
    shutil.rmtree(repo / "models/champion")
    proc = run_module("stages.validate", repo)
    assert_clear_error(proc, "stages.validate",
                       "the champion (models/champion) is not in this workspace", "models/champion",
                       "restore it from the local DVC cache: `dvc checkout models/champion.dvc`")
    dvc(repo, "checkout", "models/champion.dvc")
    assert run_module("stages.validate", repo).returncode == 0
