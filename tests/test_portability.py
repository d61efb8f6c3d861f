"""The project runs the same on any clone and any machine (issue 26, items 8, 10, 11).

- no tracked text file holds an absolute path of one developer's checkout or home;
- the entry points (flows/, commands/) default Prefect and DVC analytics off, a user's own
  choice kept, so a run outside ``make`` logs no telemetry ERROR;
- a benchmark given a missing input answers with what / where / fix, never a traceback, and
  every benchmark records the CPU's vector instructions with its figures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, assert_clear_error, assert_no_traceback

# an absolute path into a home, a work area or a scratch checkout: true on one machine only
ABSOLUTE_CHECKOUT_PATH = re.compile(r"(?<![\w.$~/-])(?:/(?:work|root|Users|tmp)/|/home/[\w.-]+/)")
# (file, text on the line): where such a path is an example, not a path of this machine
ALLOWED = {
    (".gitignore", "/tmp/"): "a root-anchored ignore pattern (the checkout's own tmp/), not a path",
    ("docs/review.md", "dvc plots show --out /tmp/plots"): "an example output folder of a command",
    ("tests/test_report.py", "/tmp/pwned"): "a hostile argument string the test feeds in, never read",
}
ANALYTICS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1"}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True,
                           text=True).stdout.split("\0")
    files = []
    for name in filter(None, names):
        path = REPO_ROOT / name
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        head = path.read_bytes()[:8192]
        if b"\0" not in head:  # binary files (PNG, parquet) hold no paths a reader would follow
            files.append(path)
    return files


def test_no_tracked_text_file_holds_an_absolute_checkout_path() -> None:
    found = []
    for path in tracked_text_files():
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel == "tests/test_portability.py":
            continue  # this file names the patterns it looks for
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if ABSOLUTE_CHECKOUT_PATH.search(line) and not any(
                    rel == file and text in line for file, text in ALLOWED):
                found.append(f"{rel}:{number}: {line.strip()[:160]}")
    assert not found, ("absolute paths of one machine (write them relative to the repository root; "
                       "benchmarks record paths through benchmarks.machine.shown_path):\n"
                       + "\n".join(found))


def test_the_scan_sees_what_it_must() -> None:
    for bad in ("--onnx-dir /work/main/models/onnx", "cd /home/alice/retrainer", "/root/x",
                "/Users/bob/x", '"model": "/tmp/bench18/model.onnx"'):
        assert ABSOLUTE_CHECKOUT_PATH.search(bad), bad
    for fine in ("models/onnx", "../shared/datasets/banking77", "$TMPDIR/b77ckpt", ".dvc/tmp/lock",
                 "~/retrainer", "/proc/cpuinfo", "https://example.com/work/x"):
        assert not ABSOLUTE_CHECKOUT_PATH.search(fine), fine


# --------------------------------------------------------------------------- analytics off


def python_without_analytics_env(code: str, **env: str) -> dict[str, str]:
    """Run ``code`` in a fresh interpreter whose environment lacks the analytics switches (plus
    ``env``); it prints a JSON object, returned parsed."""
    base = {k: v for k, v in os.environ.items() if k not in ANALYTICS}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**base, "PYTHONPATH": str(REPO_ROOT), **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


SHOW_ENV = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {sorted(ANALYTICS)!r}}}))"


@pytest.mark.parametrize("package", ["flows", "commands"])
def test_entry_packages_default_analytics_off(package: str) -> None:
    assert python_without_analytics_env(f"import {package}; {SHOW_ENV}") == ANALYTICS


@pytest.mark.parametrize("package", ["flows", "commands"])
def test_a_user_who_opted_in_keeps_their_choice(package: str) -> None:
    mine = {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "0", "DVC_NO_ANALYTICS": ""}
    assert python_without_analytics_env(f"import {package}; {SHOW_ENV}", **mine) == mine


def test_prefect_sees_analytics_off_when_a_flow_module_is_imported() -> None:
    code = ("import json, flows.monitoring; from prefect.settings import get_current_settings; "
            "print(json.dumps({'analytics': get_current_settings().server.analytics_enabled}))")
    assert python_without_analytics_env(code) == {"analytics": False}


@pytest.mark.slow
def test_a_flow_run_outside_make_logs_no_telemetry_error(tmp_path: Path) -> None:
    """``python -m flows.monitoring`` with a temporary Prefect server, analytics variables unset:
    it fails on the missing champion with its own message, and no ERROR line from telemetry."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    base = {k: v for k, v in os.environ.items() if k not in ANALYTICS}
    proc = subprocess.run([sys.executable, "-m", "flows.monitoring", "--repo-dir", str(repo)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**base, "PYTHONPATH": str(REPO_ROOT),
                               "PREFECT_HOME": str(tmp_path / "prefect-home")})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "there is no champion yet" in output and "promote a model first" in output, output[-3000:]
    assert_no_traceback(output)
    assert "telemetry" not in output.lower(), output[-3000:]
    assert not [line for line in output.splitlines() if "| ERROR" in line], output[-3000:]


# --------------------------------------------------------------------------- benchmarks


def run_benchmark(script: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"benchmarks/{script}", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("script", "args", "what", "where", "fix"), [
    ("serve_load.py", ["--onnx-dir", "{missing}"], "the exported model not found",
     "{missing}/model.int8.onnx", "pass --onnx-dir DIR"),
    ("serve_load.py", ["--onnx-dir", "{export}", "--test-split", "{missing}"],
     "the test split not found", "{missing}", "pass --test-split FILE"),
    ("drift_power.py", ["--checkpoint", "{missing}"], "the checkpoint not found", "{missing}",
     "pass --checkpoint DIR"),
    ("int8_batch_invariance.py", ["--checkpoint", "{missing}"], "the checkpoint not found",
     "{missing}", "pass --checkpoint DIR"),
    ("real_data.py", ["--data", "{missing}"], "the dataset's train.csv not found", "{missing}",
     "pass --data DIR"),
    ("scale_scoring.py", ["--model-dir", "{missing}"], "the int8 model in --model-dir not found",
     "{missing}/model.int8.onnx", "pass an export folder"),
    ("predict_memory.py", ["--model", "{missing}"], "the ONNX model (--model) not found", "{missing}",
     "leave --model out"),
], ids=["serve_load-export", "serve_load-split", "drift_power", "int8_batch_invariance", "real_data",
        "scale_scoring", "predict_memory"])
def test_a_benchmark_given_a_missing_path_says_what_where_and_how_to_fix(
        tmp_path: Path, script: str, args: list[str], what: str, where: str, fix: str) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.int8.onnx").write_bytes(b"not read: the test split is checked first")
    paths = {"missing": str(tmp_path / "missing"), "export": str(export)}
    proc = run_benchmark(script, *(a.format(**paths) for a in args))
    assert_clear_error(proc, f"benchmarks/{script}", what, where.format(**paths), fix)


def test_benchmark_defaults_are_this_checkouts_paths() -> None:
    proc = run_benchmark("serve_load.py", "--help")
    assert proc.returncode == 0 and "default: models/onnx of this checkout" in " ".join(proc.stdout.split())


CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni amx_tile

processor\t: 1
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni amx_tile
"""


def test_machine_facts_record_the_vector_instructions() -> None:
    from benchmarks.machine import VECTOR_FLAGS, machine_facts, machine_line

    facts = machine_facts(CPUINFO)
    assert facts["cpu_model"] == "Example CPU 9000"
    assert facts["vector_flags"] == ["avx2", "avx512f", "avx512bw", "avx512_vnni", "amx_tile"]
    assert facts["cpus"] == os.cpu_count() and facts["python"] and "numpy" in facts["versions"]
    line = machine_line(facts)
    assert line.startswith("# machine: Example CPU 9000 |")
    assert "| vector: avx2 avx512f avx512bw avx512_vnni amx_tile |" in line
    assert "none of avx2" in machine_line(machine_facts("model name\t: Old\nflags\t: fpu sse2\n"))
    assert "vector: unknown" in machine_line(machine_facts("")) and set(VECTOR_FLAGS) >= {
        "avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"}
    json.dumps(facts)  # goes into every results JSON


def test_recorded_paths_are_relative_to_the_checkout() -> None:
    import tempfile

    from benchmarks.machine import BANKING77, shown_command, shown_path

    assert shown_path(REPO_ROOT / "models/onnx") == "models/onnx"
    assert shown_path(BANKING77) == "../shared/datasets/banking77"
    scratch = Path(tempfile.gettempdir()) / "b77ckpt"
    # a scratch dir is $TMPDIR/..., or ../... where the checkout itself sits in the temp dir (a CI
    # clone in /tmp): never an absolute path of this machine
    shown = shown_path(scratch)
    assert shown in ("$TMPDIR/b77ckpt", "../b77ckpt"), shown
    command = shown_command([str(REPO_ROOT / "benchmarks/x.py"), "--model", str(REPO_ROOT / "m"),
                             f"--out={scratch}", "--rows", "10"])
    assert command == f"python benchmarks/x.py --model m --out={shown} --rows 10"
