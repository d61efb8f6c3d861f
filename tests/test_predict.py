"""The predict CLI: scores a CSV with the exported model, fails clearly, never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, run_command
from tests.test_export import LONG_TEXT, MAX_LENGTH, build_project

TEXTS = ["where is my package 123", "please refund the 42 charge", LONG_TEXT,
         "cant log in to my account", ""]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    """The exported fp32 model of a tiny project (predict takes any exported model file), from
    a mean-pooling encoder, with the out-of-scope detector the oos stage fitted."""
    root = build_project(tmp_path_factory.mktemp("predict-project"), tiny_st_model_dir,
                         quantize=False)
    return root / "models" / "onnx" / "model.onnx"


def predict(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return run_command("predict", cwd, *map(str, args))


def test_scores_csv_end_to_end(model_path: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(TEXTS))], "text": TEXTS,
                  "extra": "x"}).to_csv(src, index=False)
    proc = predict(tmp_path, "--model", model_path, "--input", src, "--output", "out.csv",
                   "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    labels = json.loads((model_path.parent / "labels.json").read_text())
    assert list(out.columns) == ["id", "label", "out_of_scope", "oos_score"] + [
        f"prob_{name}" for name in labels]
    assert out["id"].tolist() == [f"r{i}" for i in range(len(TEXTS))]  # input order kept
    probs = out[[f"prob_{name}" for name in labels]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # the label is the class, or the detector's label where the text is out of scope
    detector = json.loads((model_path.parent / "oos.json").read_text())
    flagged = out["out_of_scope"].to_numpy(dtype=bool)
    assert (flagged == (out["oos_score"] > detector["threshold"])).all()
    assert out["label"].tolist() == [detector["label"] if f else labels[i]
                                     for f, i in zip(flagged, probs.argmax(axis=1), strict=True)]
    assert f"out of scope: {flagged.sum()}" in proc.stdout
    assert f"scored {len(TEXTS)} rows" in proc.stdout
    assert f"truncated to {MAX_LENGTH} tokens: 1" in proc.stdout  # only LONG_TEXT
    assert "empty texts: 1" in proc.stdout
    assert "CPUExecutionProvider" in proc.stdout

    # the very same numbers as the PyTorch model train wrote (same pooling, same head)
    from stages.metrics import softmax
    from stages.model import load_classifier, predict_logits

    model, tokenizer = load_classifier(model_path.parents[1] / "checkpoint")
    torch_probs = softmax(predict_logits(model, tokenizer, [t for t in TEXTS], MAX_LENGTH))
    assert np.allclose(torch_probs, probs, atol=1e-4)

    # the same rows one by one give the same scores: batching and padding do not leak
    single = predict(tmp_path, "--model", model_path, "--input", src, "--output", "one.csv",
                     "--batch-size", "1")
    assert single.returncode == 0, single.stderr
    one = pd.read_csv(tmp_path / "one.csv")
    assert np.allclose(one.filter(like="prob_").to_numpy(), probs, atol=1e-5)


def test_without_id_keeps_text(model_path: Path, tmp_path: Path) -> None:
    pd.DataFrame({"text": TEXTS[:2]}).to_csv(tmp_path / "in.csv", index=False)
    proc = predict(tmp_path, "--model", model_path, "--input", "in.csv", "--output", "o.csv")
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "o.csv")["text"].tolist() == TEXTS[:2]


@pytest.mark.parametrize(("content", "message"), [
    ("id,body\n1,hello\n", "no 'text' column"),
    ("id,text\n", "has no rows"),
    ("", "is empty"),
])
def test_bad_input_files(model_path: Path, tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "in.csv").write_text(content)
    proc = predict(tmp_path, "--model", model_path, "--input", "in.csv", "--output", "o.csv")
    assert proc.returncode == 1
    assert message in proc.stderr and "ERROR" in proc.stderr
    assert not (tmp_path / "o.csv").exists()


def test_missing_model_and_missing_tokenizer(model_path: Path, tmp_path: Path) -> None:
    pd.DataFrame({"text": ["hello"]}).to_csv(tmp_path / "in.csv", index=False)
    proc = predict(tmp_path, "--model", "nope/model.int8.onnx", "--input", "in.csv",
                   "--output", "o.csv")
    assert proc.returncode == 1 and "model not found" in proc.stderr
    assert "dvc repro quantize" in proc.stderr

    lonely = tmp_path / "lonely" / "model.onnx"  # copied without its tokenizer/ and labels
    lonely.parent.mkdir()
    shutil.copy(model_path, lonely)
    proc = predict(tmp_path, "--model", lonely, "--input", "in.csv", "--output", "o.csv")
    assert proc.returncode == 1 and "tokenizer not found" in proc.stderr

    proc = predict(tmp_path, "--model", model_path, "--input", "missing.csv", "--output", "o.csv")
    assert proc.returncode == 1 and "input file not found" in proc.stderr


def test_predict_never_imports_torch(model_path: Path, tmp_path: Path) -> None:
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    runner = (
        "import json, sys\n"
        "from commands import predict\n"
        "predict.main(sys.argv[1:])\n"
        "heavy = {'torch', 'transformers', 'sklearn', 'scipy', 'great_expectations', 'prefect'}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
        "print(json.dumps('onnxruntime' in sys.modules and 'tokenizers' in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", runner, "--model", str(model_path), "--input",
                           "in.csv", "--output", "o.csv"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    *_, imported, used_ort = proc.stdout.strip().splitlines()
    assert json.loads(imported) == []
    assert json.loads(used_ort) is True  # the run really scored (it was not a no-op)
    assert (tmp_path / "o.csv").is_file()
