"""export, quantize and benchmark on the tiny model: parity, symbolic dims, the int8 gate, timings.

The stages run as DVC runs them (``python -m stages.<name>`` in a project directory) on a tiny
"fine-tuned" checkpoint: the tiny random BERT with a classification head, saved like train does.
"""

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

from tests.conftest import REPO_ROOT, make_rows, run_stage, set_params

MAX_LENGTH = 32
FAST_PARAMS = {
    "export": {"parity_batch1_rows": 16, "parity_long_rows": 4},
    # a random tiny head has near-tied logits, so int8 may flip a few: the real gate is 0.98
    "quantize": {"min_agreement": 0.8, "max_f1_drop": 10.0, "threads": 1},
    "benchmark": {"threads": 1, "batch1_texts": 6, "batches": 2, "batch_size": 8, "warmup": 2},
}
LONG_TEXT = "my parcel has not arrived and tracking says shipped " * 20


def make_checkpoint(root: Path, base_dir: Path, labels: list[str]) -> Path:
    """A fine-tuned-shaped checkpoint as train writes it: the project's classifier on the base
    encoder (its own pooling), labels.json, manifest."""
    import torch
    from transformers import AutoTokenizer

    from stages.model import build_classifier

    out = root / "models" / "checkpoint"
    out.mkdir(parents=True)
    torch.manual_seed(0)
    model, _, _ = build_classifier(str(base_dir), labels, "auto", dropout=0.0)
    with torch.no_grad():  # confident logits, like a trained head: argmax is not a coin toss
        model.head.weight.mul_(20)
    model.save(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    (out / "labels.json").write_text(json.dumps(labels))
    (out / "manifest.json").write_text(json.dumps({"params": {"max_length": MAX_LENGTH}}))
    return out


def build_project(root: Path, base_dir: Path, quantize: bool = True) -> Path:
    """params.yaml, a test split, a checkpoint, and (optionally) the exported + int8 models."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    set_params(root, FAST_PARAMS)
    texts, labels = make_rows(8, seed=1)
    test = pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")
    test.loc[0, "text"] = LONG_TEXT
    (root / "data" / "splits").mkdir(parents=True)
    test.to_parquet(root / "data" / "splits" / "test.parquet", index=False)
    for name, seed in (("train", 2), ("val", 3)):  # what the oos stage fits the detector on
        texts, labels = make_rows(8, seed=seed)
        split = pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")
        split.to_parquet(root / "data" / "splits" / f"{name}.parquet", index=False)
    make_checkpoint(root, base_dir, sorted(test["label"].unique()))
    for stage in ["oos", "export"] + (["quantize"] if quantize else []):
        proc = run_stage(stage, root)
        assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    """Exported from a mean-pooling (sentence-transformers style) encoder: parity covers pooling."""
    return build_project(tmp_path_factory.mktemp("onnx-project"), tiny_st_model_dir)


def test_export_passes_parity_with_symbolic_dims(project: Path) -> None:
    import onnx
    import onnxruntime as ort

    onnx_dir = project / "models" / "onnx"
    proto = onnx.load(str(onnx_dir / "model.onnx"))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for inp in proto.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"], inp.name
        assert all(d.dim_value == 0 for d in dims)
    assert json.loads((onnx_dir / "labels.json").read_text()) == json.loads(
        (project / "models/checkpoint/labels.json").read_text())
    assert (onnx_dir / "tokenizer" / "tokenizer.json").is_file()

    pooling = json.loads((project / "models/checkpoint/pooling.json").read_text())
    assert pooling == {"mode": "mean"}  # the graph below must compute the mean-pooled logits
    parity = json.loads((project / "metrics" / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    assert parity["argmax_agreement"] == 1.0
    assert set(parity["cases"]) == {"batch1_short", "batch1_long", "batch32_mixed",
                                    "batch32_long"}
    assert parity["cases"]["batch32_long"]["seq_len_min"] == MAX_LENGTH  # truncated, full length
    assert parity["cases"]["batch1_short"]["seq_len_max"] < MAX_LENGTH
    assert parity["max_length"] == MAX_LENGTH  # taken from the checkpoint's manifest

    # the graph really is dynamic: batch 3 and a sequence length never traced
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones((3, 11), dtype=np.int64) for i in session.get_inputs()}
    assert session.run(None, feeds)[0].shape == (3, 6)


def test_parity_gate_fails_on_tampered_model(project: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from stages.common import StageError
    from stages.export import ExportParams, check_parity, require_parity
    from stages.model import load_classifier

    onnx_dir = project / "models" / "onnx"
    tampered = tmp_path / "onnx"
    shutil.copytree(onnx_dir, tampered)
    proto = onnx.load(str(tampered / "model.onnx"))
    # perturb the largest initializer (the word embeddings) slightly
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    arr += np.random.default_rng(0).normal(0, 0.05, arr.shape).astype(arr.dtype)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(proto, str(tampered / "model.onnx"))

    model, _ = load_classifier(project / "models" / "checkpoint")
    texts = pd.read_parquet(project / "data/splits/test.parquet")["text"].tolist()
    params = ExportParams(parity_batch1_rows=8, parity_long_rows=2)
    good = check_parity(onnx_dir / "model.onnx", model, texts, params)
    require_parity(good, "original")  # the untouched export passes the same check
    bad = check_parity(tampered / "model.onnx", model, texts, params)
    assert not bad["passed"] and bad["max_abs_diff"] > 1e-4
    with pytest.raises(StageError, match="parity gate failed") as err:
        require_parity(bad, str(tampered / "model.onnx"))
    assert bad["worst"]["text"][:30] in str(err.value)  # the worst example is shown


def test_export_without_checkpoint_fails_with_hint(workdir: Path) -> None:
    set_params(workdir, {"export": {}})
    proc = run_stage("export", workdir)
    assert proc.returncode == 1
    assert "no checkpoint" in proc.stderr and "dvc repro train" in proc.stderr


def test_export_without_a_detector_fails_with_hint(workdir: Path, tiny_st_model_dir: Path) -> None:
    texts, labels = make_rows(4, seed=1)
    (workdir / "data/splits").mkdir(parents=True)
    pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id").to_parquet(
        workdir / "data/splits/test.parquet")
    make_checkpoint(workdir, tiny_st_model_dir, sorted({r["label"] for r in labels}))
    set_params(workdir, FAST_PARAMS)
    proc = run_stage("export", workdir)
    assert proc.returncode == 1
    assert "no out-of-scope detector in models/oos" in proc.stderr and "dvc repro oos" in proc.stderr
    assert not (workdir / "models/onnx/model.onnx").exists()  # nothing half-shipped


def test_quantize_fuses_shrinks_and_agrees(project: Path) -> None:
    from stages.onnx_session import encode, load_onnx_model, run_logits

    onnx_dir = project / "models" / "onnx"
    report = json.loads((project / "metrics" / "quantize.json").read_text())
    assert report["passed"] and report["int8"]["passed"]
    fused = report["fused_operators"]
    assert fused.get("Attention") == 2 and fused.get("SkipLayerNormalization", 0) >= 2
    assert report["size_mb"]["int8"] < report["size_mb"]["fp32"]
    assert report["int8"]["agreement"] >= 0.8
    # the export ships the oos stage's detector, and int8 makes fp32's in/out decisions
    assert (onnx_dir / "oos.json").is_file() and (onnx_dir / "oos.npz").is_file()
    oos = report["int8"]["oos"]
    assert oos["passed"] and oos["agreement"] >= oos["min_agreement"] == 0.95

    texts = pd.read_parquet(project / "data/splits/test.parquet")["text"].tolist()
    fp32 = load_onnx_model(onnx_dir / "model.onnx", threads=1, device="cpu")
    int8 = load_onnx_model(onnx_dir / "model.int8.onnx", threads=1, device="cpu")
    a = run_logits(fp32, encode(fp32, texts)).argmax(1)
    b = run_logits(int8, encode(int8, texts)).argmax(1)
    assert (a == b).mean() == pytest.approx(report["int8"]["agreement"])


def test_dynamic_int8_scores_every_text_as_it_scores_alone(project: Path) -> None:
    from stages.onnx_session import encode, load_onnx_model, pad, run_logits, run_logits_and_embeddings

    onnx_dir = project / "models" / "onnx"
    texts = pd.read_parquet(project / "data/splits/test.parquet")["text"].tolist()
    fp32 = load_onnx_model(onnx_dir / "model.onnx", threads=1, device="cpu")
    int8 = load_onnx_model(onnx_dir / "model.int8.onnx", threads=1, device="cpu")
    assert fp32.batch_invariant and not int8.batch_invariant
    for model in (fp32, int8):
        encodings = encode(model, texts)
        alone = np.vstack([model.session.run(None, pad(model, [e]))[0] for e in encodings])
        together = model.session.run(None, pad(model, encodings))[0]
        if model is int8:  # why the rule exists: one call's activation scale spans all its texts
            assert np.abs(together - alone).max() > 1e-4
        else:
            np.testing.assert_allclose(together, alone, atol=1e-5)
        reverse = encodings[::-1]
        for batch_size, order in ((32, encodings), (3, reverse)):
            got = run_logits(model, order, batch_size=batch_size)
            want = alone if order is encodings else alone[::-1]
            if model is int8:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, atol=1e-5)
    logits, _ = run_logits_and_embeddings(int8, encode(int8, texts), batch_size=32)
    np.testing.assert_array_equal(logits, run_logits(int8, encode(int8, texts), batch_size=1))


def test_quantize_gate_blocks_and_keeps_previous_model(project: Path, tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(project, root)
    int8 = root / "models" / "onnx" / "model.int8.onnx"
    before = int8.read_bytes()
    # the real stage with an unreachable agreement threshold (above 1, which params.yaml refuses,
    # so it is set on the loaded params): the gate must fail
    code = ("import dataclasses, stages.quantize as q\n"
            "real = q.load_params\n"
            "q.load_params = lambda *a: dataclasses.replace(real(*a), min_agreement=1.01)\n"
            "from stages.common import run_cli\n"
            "run_cli(q.main)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 1
    assert "int8 accuracy gate failed" in proc.stderr and "agreement with fp32" in proc.stderr
    assert int8.read_bytes() == before  # the failed candidate did not replace the shipped model
    report = json.loads((root / "metrics" / "quantize.json").read_text())
    assert report["passed"] is False
    assert not [p for p in int8.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_accuracy_gate_logic() -> None:
    from stages.quantize import QuantizeParams, Scored, accuracy_gate

    labels = ["a", "b"]
    ref = np.array([[2.0, 0.0]] * 50 + [[0.0, 2.0]] * 50)
    truth = ["a"] * 50 + ["b"] * 50
    params = QuantizeParams()
    same = accuracy_gate(Scored(ref, labels), Scored(ref + 0.01, labels), truth, params)
    assert same["passed"] and same["agreement"] == 1.0 and same["f1_drop_points"] == 0
    assert same["oos"] is None  # no detector beside the model: nothing to compare
    flipped = ref.copy()
    flipped[:3] = [0.0, 2.0]  # 3% of predictions change: agreement 0.97 < 0.98
    worse = accuracy_gate(Scored(ref, labels), Scored(flipped, labels), truth, params)
    assert not worse["passed"] and worse["agreement"] == pytest.approx(0.97)
    assert worse["f1_drop_points"] > 1.0
    # the same labels, but int8 calls 6% of the texts out of scope that fp32 kept: 0.94 < 0.95
    kept, some_out = np.zeros(100, bool), np.zeros(100, bool)
    some_out[:6] = True
    oos = accuracy_gate(Scored(ref, labels, kept), Scored(ref, labels, some_out), truth, params)
    assert not oos["passed"] and oos["agreement"] == 1.0
    assert oos["oos"] == {"fp32_flagged": 0.0, "flagged": 0.06, "agreement": 0.94,
                          "min_agreement": 0.95, "passed": False}
    # test rows labelled out_of_scope (no class of the model) are left out of the macro-F1
    with_examples = accuracy_gate(Scored(ref, labels), Scored(ref, labels),
                                  truth[:-2] + ["out_of_scope"] * 2, params)
    assert with_examples["passed"] and with_examples["macro_f1"] == 1.0


def test_benchmark_writes_table_plot_and_ratios(project: Path) -> None:
    proc = run_stage("benchmark", project)
    assert proc.returncode == 0, proc.stderr
    # each runtime is timed alone in a process of its own, never interleaved with the others
    assert proc.stderr.count("timed alone") == 3
    table = pd.read_csv(project / "plots" / "latency.csv")
    assert list(table.columns) == ["runtime", "p50_ms", "p95_ms", "throughput_per_s", "size_mb"]
    assert {"pytorch fp32", "onnxruntime fp32", "onnxruntime int8"} <= set(table["runtime"])
    assert (table["p95_ms"] >= table["p50_ms"]).all() and (table["throughput_per_s"] > 0).all()
    assert (project / "plots" / "latency.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((project / "metrics" / "export.json").read_text())
    assert report["environment"]["threads"] == 1
    assert "each runtime alone in its own process" in report["workload"]["timed"]
    int8 = report["runtimes"]["onnxruntime int8"]
    torch = report["runtimes"]["pytorch fp32"]
    assert report["ratios"]["int8_vs_torch_size_ratio"] == pytest.approx(
        torch["size_mb"] / int8["size_mb"], rel=0.02)
    assert report["ratios"]["int8_vs_torch_p50_speedup"] == pytest.approx(
        torch["p50_ms"] / int8["p50_ms"], rel=0.02)


def test_exported_graphs_have_a_pooled_embedding_output(project: Path) -> None:
    """fp32 and int8 graphs: logits first (readers of outputs[0] unchanged), then ``embedding``,
    the mean-pooled vector TextClassifier.embed computes (the head's input)."""
    import torch

    from stages.model import load_classifier
    from stages.onnx_session import encode, load_onnx_model, pad, run_logits_and_embeddings

    onnx_dir = project / "models" / "onnx"
    model, _ = load_classifier(project / "models" / "checkpoint")
    texts = pd.read_parquet(project / "data/splits/test.parquet")["text"].tolist()
    fp32 = load_onnx_model(onnx_dir / "model.onnx", threads=1, device="cpu")
    int8 = load_onnx_model(onnx_dir / "model.int8.onnx", threads=1, device="cpu")
    for m in (fp32, int8):
        assert [o.name for o in m.session.get_outputs()] == ["logits", "embedding"]
    encodings = encode(fp32, texts)
    logits, emb = run_logits_and_embeddings(fp32, encodings, batch_size=5)
    assert emb.shape == (len(texts), 32)
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")[:8]
    feeds = pad(fp32, [encodings[i] for i in order])  # padded batch: pooling must ignore padding
    with torch.inference_mode():
        pooled = model.embed(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
        head = model.head(torch.from_numpy(emb)).numpy()
    np.testing.assert_allclose(emb[order], pooled, atol=1e-4)
    np.testing.assert_allclose(head, logits, atol=1e-4)  # the head reads exactly this vector
    q_logits, q_emb = run_logits_and_embeddings(int8, encode(int8, texts))
    cos = (q_emb * emb).sum(1) / np.linalg.norm(q_emb, axis=1) / np.linalg.norm(emb, axis=1)
    assert cos.min() > 0.95  # int8 keeps the embedding too (close, not bit-equal)
