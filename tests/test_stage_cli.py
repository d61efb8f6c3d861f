"""`python -m stages.<name> --help` answers without running the stage; unknown arguments are refused.

Run by hand, a stage rewrites its outputs outside `dvc repro` (dvc.lock then no longer matches),
so neither --help nor a typo may start it: every output already there stays byte-identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

STAGE_MODULES = sorted({spec["cmd"].split()[2] for spec in
                        yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].values()})


def run_module(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def a_project_with_outputs(root: Path) -> dict[Path, bytes]:
    """The project's dvc.yaml and params.yaml, and a stand-in for every declared output file."""
    for name in ("dvc.yaml", "params.yaml"):
        (root / name).write_bytes((REPO_ROOT / name).read_bytes())
    outputs = {}
    for spec in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values():
        for key in ("outs", "metrics", "plots"):
            for entry in spec.get(key) or []:
                path = root / (entry if isinstance(entry, str) else next(iter(entry)))
                if path.suffix:  # a file (directories such as models/checkpoint are left out)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"earlier output of " + path.name.encode())
                    outputs[path] = path.read_bytes()
    return outputs


def test_every_stage_of_dvc_yaml_is_covered() -> None:
    assert STAGE_MODULES == ["stages.benchmark", "stages.evaluate", "stages.export",
                             "stages.gate", "stages.ingest", "stages.label_audit", "stages.oos",
                             "stages.quantize",
                             "stages.split",
                             "stages.train", "stages.validate"]


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_help_says_what_the_stage_reads_and_writes_and_runs_nothing(module: str,
                                                                     tmp_path: Path) -> None:
    outputs = a_project_with_outputs(tmp_path)
    proc = run_module(module, tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    name = module.split(".")[1]
    assert f"DVC stage `{name}`" in proc.stdout and f"dvc repro {name}" in proc.stdout
    for line in ("reads:", "writes:", f"the `{name}:` section of params.yaml"):
        assert line in proc.stdout, proc.stdout
    assert "started" not in proc.stderr and "done in" not in proc.stderr  # the stage never ran
    for path, content in outputs.items():
        assert path.read_bytes() == content, f"--help rewrote {path}"


def test_help_names_the_files_params_point_at(tmp_path: Path) -> None:
    a_project_with_outputs(tmp_path)
    proc = run_module("stages.ingest", tmp_path, "--help")
    assert "data/sample/texts.csv (ingest.source.texts)" in proc.stdout
    assert "data/raw/texts.parquet, data/labels/labels.parquet" in proc.stdout


@pytest.mark.parametrize("module", ["stages.ingest", "stages.train", "stages.validate"])
def test_an_unknown_argument_is_refused_with_a_usage_line(module: str, tmp_path: Path) -> None:
    outputs = a_project_with_outputs(tmp_path)
    proc = run_module(module, tmp_path, "--epochs", "3")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"usage: python -m {module}")
    assert "unrecognized arguments: --epochs 3" in proc.stderr
    assert "Traceback" not in proc.stderr
    for path, content in outputs.items():
        assert path.read_bytes() == content
