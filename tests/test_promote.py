"""promote: refuses what the gate refused, never damages the champion, and feeds back into DVC."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from commands import promote
from stages.common import StageError
from stages.data import text_fingerprint
from tests.conftest import TINY_PIPELINE, dvc, run_command, set_params
from tests.helpers import git_identity_env

IDENTITY = git_identity_env("Ada Tester", "ada@example.com")


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)


def write_gate(root: Path, passed: bool, failed: list[str] | None = None) -> None:
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/gate.json").write_text(json.dumps(
        {"passed": passed, "failed": failed or [], "checks": [], "inputs": {}}))


def test_refuses_after_a_failed_gate(workdir: Path) -> None:
    write_gate(workdir, False, ["min_macro_f1", "significance[not_worse]"])
    (workdir / "models").mkdir()
    (workdir / "models/champion.json").write_text('{"champion": null}\n')
    proc = run_command("promote", workdir)
    assert proc.returncode == 1
    assert "gate FAILED (min_macro_f1, significance[not_worse])" in proc.stderr
    assert "refusing to promote" in proc.stderr and "--force" in proc.stderr
    assert not (workdir / "models/champion").exists()
    assert (workdir / "models/champion.json").read_text() == '{"champion": null}\n'


def test_force_needs_a_reason(workdir: Path) -> None:
    write_gate(workdir, False, ["min_macro_f1"])
    proc = run_command("promote", workdir, "--force")
    assert proc.returncode == 1 and "--force needs --reason" in proc.stderr


def test_refuses_without_a_gate_result(workdir: Path) -> None:
    proc = run_command("promote", workdir)
    assert proc.returncode == 1 and "no gate result" in proc.stderr


def test_refuses_a_gate_result_from_another_evaluation(workdir: Path, identity: None) -> None:
    write_gate(workdir, True)  # passed, but it records no hash of the current eval.json
    (workdir / "metrics/eval.json").write_text("{}")
    proc = run_command("promote", workdir)
    assert proc.returncode == 1
    assert "was not computed from the current metrics/eval.json" in proc.stderr


@pytest.fixture
def dvc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, identity: None) -> Path:
    """A bare git + DVC repo with a fake checkpoint, as cwd (install() works on cwd paths)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    subprocess.run(["git", "init", "-q", "-b", "main"], check=True)
    dvc(repo, "init", "-q")
    (repo / "models/checkpoint").mkdir(parents=True)
    (repo / "models/champion.json").write_text('{"champion": null}\n')
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], check=True)
    return repo


def fake_candidate(repo: Path, weights: str, macro_f1: float) -> dict:
    ckpt = repo / "models/checkpoint"
    (ckpt / "config.json").write_text('{"id2label": {"0": "a", "1": "b"}}')
    (ckpt / "model.safetensors").write_text(weights)
    (ckpt / "training_data.json").write_text('{"scheme": "x", "rows": {}, "fingerprints": []}')
    return {"test_rows": 10, "labels": ["a", "b"],
            "candidate": {"macro_f1": macro_f1, "accuracy": macro_f1, "weighted_f1": macro_f1,
                          "n": 10, "per_class": {}}}


def test_failed_commit_leaves_the_champion_untouched(dvc_repo: Path) -> None:
    gate = {"passed": True, "failed": []}
    profile = {"rows": 10}
    first = promote.install(fake_candidate(dvc_repo, "weights v1", 0.9), gate, profile,
                            False, None, "Ada Tester <ada@example.com>")
    assert (dvc_repo / "models/champion/model.safetensors").read_text() == "weights v1"
    metrics = json.loads((dvc_repo / "models/champion/metrics.json").read_text())
    assert metrics["macro_f1"] == 0.9
    assert json.loads((dvc_repo / "models/champion/data_profile.json").read_text()) == profile
    log = subprocess.run(["git", "log", "--format=%s"], capture_output=True, text=True).stdout
    assert log.splitlines()[0] == ("promote: new champion (macro-F1 0.9000, accuracy 0.9000; "
                                   "gate passed)")
    before = {p: (dvc_repo / p).read_bytes() for p in
              ("models/champion.dvc", "models/champion.json", "models/.gitignore",
               "reports/gate_history.jsonl")}
    assert json.loads(before["models/champion.json"])["champion"] == first

    # the second promotion dies at its last step (a pre-commit hook refuses the commit)
    hook = dvc_repo / ".git/hooks/pre-commit"
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(StageError, match="git commit failed"):
        promote.install(fake_candidate(dvc_repo, "weights v2", 0.95), gate, profile,
                        False, None, "Ada Tester <ada@example.com>")
    assert (dvc_repo / "models/champion/model.safetensors").read_text() == "weights v1"
    for path, content in before.items():
        assert (dvc_repo / path).read_bytes() == content, path
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], capture_output=True,
                            text=True).stdout
    assert staged == ""
    leftovers = [p.name for p in (dvc_repo / "models").iterdir() if p.name.startswith(".champ")]
    assert leftovers == []
    assert dvc(dvc_repo, "status", "models/champion.dvc").stdout.strip().endswith("up to date.")


def test_forced_promotion_is_on_the_record(dvc_repo: Path) -> None:
    gate = {"passed": False, "failed": ["min_macro_f1"]}
    record = promote.install(fake_candidate(dvc_repo, "w", 0.5), gate, {}, True,
                             "customer hotfix", "Ada Tester <ada@example.com>")
    assert record["forced"] and record["forced_by"] == "Ada Tester <ada@example.com>"
    message = subprocess.run(["git", "log", "-1", "--format=%B"], capture_output=True,
                             text=True).stdout
    assert message.startswith("promote --force: new champion (macro-F1 0.5000")
    assert "Forced by Ada Tester <ada@example.com>" in message
    assert "Failed checks: min_macro_f1" in message and "Reason: customer hotfix" in message
    history = (dvc_repo / "reports/gate_history.jsonl").read_text().splitlines()
    entry = json.loads(history[-1])
    assert entry["forced"] and entry["reason"] == "customer hotfix"
    assert entry["failed_checks"] == ["min_macro_f1"]


LENIENT_GATE = {"min_macro_f1": 0.0, "min_accuracy": None, "min_class_recall": None,
                "tfidf_margin": None}


@pytest.mark.slow
def test_promote_then_rerun_uses_the_new_champion(pipeline_repo: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   identity: None) -> None:
    """End to end on the tiny model: repro, promote, and DVC sees evaluate must re-run."""
    repo = pipeline_repo
    # the tiny random model is not good: gate only on "not worse than nothing" here
    set_params(repo, {"gate": LENIENT_GATE, "quantize": TINY_PIPELINE["quantize"]})
    subprocess.run(["git", "commit", "-qam", "lenient gate"], cwd=repo, check=True)
    dvc(repo, "repro", "quantize")
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert gate["passed"] and gate["champion"] is False

    # lineage: code the run used but nobody committed would leave the champion's commit with a
    # dvc.lock that no commit reproduces, so promote refuses and says how to commit it
    gate_code = repo / "stages/gate.py"
    gate_code.write_text(gate_code.read_text() + "\n# a local edit\n")
    dvc(repo, "repro", "gate")
    proc = run_command("promote", repo)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "the run used files that are not committed: stages/gate.py" in proc.stderr
    assert "git add stages/gate.py && git commit" in proc.stderr
    assert not (repo / "models/champion").exists()
    subprocess.run(["git", "commit", "-qm", "gate edit", "--", "stages/gate.py"], cwd=repo,
                   check=True)

    # the export goes into the champion, so it must be the current checkpoint's
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(repo.parent / "dvc-site-cache"))
    int8 = repo / "models/onnx/model.int8.onnx"
    good = int8.read_bytes()
    int8.unlink()
    int8.write_bytes(good + b"changed")
    proc = run_command("promote", repo)
    assert proc.returncode == 1
    assert "the ONNX export in models/onnx is not up to date" in proc.stderr
    assert "dvc repro quantize" in proc.stderr
    assert not (repo / "models/champion").exists()
    dvc(repo, "checkout", "--force", "quantize")
    assert int8.read_bytes() == good

    proc = run_command("promote", repo)
    assert proc.returncode == 0, proc.stderr
    # the champion carries its ONNX export, its out-of-scope detector and the predictions the
    # service checks it with
    onnx_dir = repo / "models/champion/onnx"
    assert {p.name for p in onnx_dir.iterdir()} == {
        "model.onnx", "model.int8.onnx", "labels.json", "tokenizer", "oos.json", "oos.npz",
        "reference_predictions.parquet"}
    assert (onnx_dir / "oos.json").read_bytes() == (repo / "models/oos/oos.json").read_bytes()
    assert (onnx_dir / "model.int8.onnx").read_bytes() == good
    reference = pd.read_parquet(onnx_dir / "reference_predictions.parquet")
    test = pd.read_parquet(repo / "data/splits/test.parquet")
    assert reference["text"].tolist() == test["text"].astype(str).tolist()[:256]
    assert reference["text_fingerprint"].tolist() == [text_fingerprint(t)
                                                      for t in reference["text"]]
    assert {"probs_fp32", "probs_int8"} <= set(reference.columns)
    pointer = json.loads((repo / "models/champion.json").read_text())["champion"]
    assert pointer["path"] == "models/champion" and pointer["forced"] is False
    assert (repo / "models/champion/model.safetensors").is_file()
    assert (repo / "models/champion/data_profile.json").is_file()
    committed = subprocess.run(["git", "show", "--name-only", "--format=%s", "HEAD"], cwd=repo,
                               capture_output=True, text=True).stdout.splitlines()
    assert committed[0].startswith("promote: new champion (macro-F1 ")
    assert {"models/champion.dvc", "models/champion.json",
            "reports/gate_history.jsonl"} <= set(committed[1:])
    # the run's lock and metrics are committed with the champion: the commit that names the
    # champion records the checkpoint hash that produced it, and nothing of the run is left over
    assert {"dvc.lock", "metrics/eval.json", "metrics/gate.json"} <= set(committed[1:])
    leftover = subprocess.run(["git", "status", "--porcelain", "--", "dvc.lock", "metrics",
                               "params.yaml"], cwd=repo, capture_output=True, text=True).stdout
    assert leftover == ""
    lock = yaml.safe_load(subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=repo,
                                         capture_output=True, text=True, check=True).stdout)
    checkpoint_out = next(o for o in lock["stages"]["train"]["outs"]
                          if o["path"] == "models/checkpoint")
    evaluated = next(d for d in lock["stages"]["evaluate"]["deps"]
                     if d["path"] == "models/checkpoint")
    assert checkpoint_out["md5"] == evaluated["md5"]
    assert dvc(repo, "status", "train").stdout.strip().endswith("up to date.")
    # the champion's files are DVC's, never git's (dvc add writes models/.gitignore if needed)
    ignored = subprocess.run(["git", "check-ignore", "-q", "models/champion"], cwd=repo)
    assert ignored.returncode == 0

    status = dvc(repo, "status", "evaluate").stdout
    assert "evaluate" in status and "models/champion.json" in status
    dvc(repo, "repro", "gate")
    ev = json.loads((repo / "metrics/eval.json").read_text())
    assert ev["champion"] is not None
    # the champion is the very checkpoint that is still the candidate: a paired difference of 0
    assert ev["champion"]["macro_f1"] == ev["candidate"]["macro_f1"]
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert gate["champion"] is True and gate["passed"] is True
    assert gate["comparison"]["macro_f1"]["ci95"] == [0, 0]
    # the split is stable, so the champion (trained on this very split) has seen no test row
    assert ev["paired"]["rows"] == ev["test_rows"] and ev["paired"]["excluded_champion_trained_on"] == 0
    # a passed, current gate, but the candidate is the champion's own checkpoint: never again
    assert promote.candidate_is_champion(repo)
    proc = run_command("promote", repo)
    assert proc.returncode == 1 and "the candidate is the champion already" in proc.stderr
    assert "retrain on new data, params or code first" in proc.stderr

    # a new salt reshuffles every row: most of the new test rows are ones the champion trained on.
    # evaluate must find exactly those (from the champion's fingerprint) and leave them out.
    set_params(repo, {"split": {"salt": "reshuffled"}})
    dvc(repo, "repro", "evaluate")
    ev = json.loads((repo / "metrics/eval.json").read_text())
    pred = pd.read_parquet(repo / "data/predictions/test.parquet")
    seen = set(json.loads((repo / "models/champion/training_data.json").read_text())["fingerprints"])
    expected = pred["text"].map(text_fingerprint).isin(seen)
    assert expected.sum() > 0
    assert pred["champion_trained_on"].tolist() == expected.tolist()
    assert ev["paired"]["excluded_champion_trained_on"] == int(expected.sum())
    assert ev["paired"]["rows"] == int((~expected).sum())
    assert ev["paired"]["champion_training_data"] == "fingerprint"
    proc = dvc(repo, "repro", "gate", check=False)
    report = (repo / "reports/gate.md").read_text()
    assert f"{int(expected.sum())} row(s) left out because the champion trained on them" in report


def test_champion_carries_an_export_the_service_accepts(tmp_path: Path, tiny_st_model_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """promote's reference predictions are the very ones serve's reload check reproduces."""
    import numpy as np

    from serve.model import check_parity, load_champion
    from serve.params import ServeParams
    from stages.metrics import softmax
    from stages.onnx_session import encode, load_onnx_model, run_logits
    from tests.test_export import build_project

    project = build_project(tmp_path / "project", tiny_st_model_dir)
    monkeypatch.chdir(project)
    # promote also builds the monitor's reference, calibrated on the val split
    splits = project / "data/splits"
    if not (splits / "val.parquet").exists():
        (splits / "val.parquet").write_bytes((splits / "test.parquet").read_bytes())
    dest = project / "models/champion"
    promote.build_champion(dest, fake_candidate(project, "w", 0.7), {"rows": 1})
    onnx_dir = dest / "onnx"
    assert (onnx_dir / "model.int8.onnx").read_bytes() == (
        project / "models/onnx/model.int8.onnx").read_bytes()
    reference = pd.read_parquet(onnx_dir / "reference_predictions.parquet")
    test = pd.read_parquet(project / "data/splits/test.parquet")
    assert reference["id"].tolist() == test["id"].tolist()
    model = load_onnx_model(onnx_dir / "model.int8.onnx", device="cpu")
    one_by_one = softmax(run_logits(model, encode(model, test["text"].tolist()), batch_size=1))
    assert np.allclose(np.stack(reference["probs_int8"]), one_by_one, atol=1e-6)

    (project / "models/champion.json").write_text(json.dumps(
        {"champion": {"path": "models/champion", "commit": "abc"}}))
    params = ServeParams(threads=1, device="cpu", max_batch=4)
    served = load_champion(params)
    assert served.version.startswith("abc-") and served.metrics["macro_f1"] == 0.7
    assert check_parity(served, params)["max_abs_diff"] < 1e-5
