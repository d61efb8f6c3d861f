"""The shared report formatters and the git/dvc wrapper (stages.report_format, stages.vcs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stages.common import StageError
from stages.report_format import MISSING, cell, ci, md_table, num, signed
from stages.vcs import git, git_identity, git_try, head_commit


def test_numbers_read_the_same_everywhere() -> None:
    assert [num(None), num(True), num(3), num(0.0), num(0.912345), num(123456.0), num(1e-5)] == \
        [MISSING, "true", "3", "0.0000", "0.9123", "1.235e+05", "1e-05"]
    assert [signed(None), signed(0.01), signed(-0.5), signed(3), signed(-2)] == \
        [MISSING, "+0.0100", "-0.5000", "+3", "-2"]
    assert ci([-0.01, 0.02]) == "[-0.0100, +0.0200]" and ci(None) == MISSING


def test_md_table_escapes_cells_and_aligns_numbers_right() -> None:
    lines = md_table(["name", "value"], [["a|b", num(0.5)], ["two\nlines", num(None)]])
    assert lines == ["| name | value |", "| --- | ---: |", "| a\\|b | 0.5000 |",
                     f"| two lines | {MISSING} |"]
    assert cell("x|y") == "x\\|y"
    with pytest.raises(ValueError, match="2 letters for 3 columns"):
        md_table(["a", "b", "c"], [], align="lr")


def test_git_wrapper_quotes_git_and_branches_on_exit_codes(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL"):
        monkeypatch.delenv(key, raising=False)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    assert head_commit(tmp_path) is None  # no commit yet
    with pytest.raises(StageError, match=r"git rev-parse --verify no-such-rev failed \(exit 128\)"):
        git("rev-parse", "--verify", "no-such-rev", cwd=tmp_path)
    assert git_try("rev-parse", "--verify", "--quiet", "no-such-rev", cwd=tmp_path).returncode == 1
    git("-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty",
        "-m", "c0", cwd=tmp_path)
    assert head_commit(tmp_path) == git("rev-parse", "HEAD", cwd=tmp_path)
    git("config", "user.name", "Ada", cwd=tmp_path)
    git("config", "user.email", "ada@example.com", cwd=tmp_path)
    assert git_identity(tmp_path) == "Ada <ada@example.com>"
