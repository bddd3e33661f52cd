"""The multi-task fine-tuning loop of the `finetune` judge (`finetune.py`): S/R batches from the valid
labels and keep/discard batches from the train labels, shuffled together, bf16 autocast on CPU, a tqdm bar,
and a checkpoint (model, optimizer, scheduler, position) written every few minutes so an interrupted fit
resumes where it stopped."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from selection.distill.encoder import EncoderConfig, collate, soft_targets
from selection.distill.finetune import FinetuneNet, FinetuneOptions, autocast
from selection.distill.train import _optimizer, bucketed_batches

log = logging.getLogger("empathy.selection.distill")
SR, DISCARD_TASK = "sr", "discard"
Batch = tuple[str, list[int]]


@dataclass(frozen=True)
class TaskData:
    """Token ids and labels of both tasks: valid pairs with (S, R), train pairs with keep/discard."""

    valid_seqs: list[list[int]]
    valid_targets: np.ndarray  # (n_valid, 2)
    train_seqs: list[list[int]]
    train_discard: np.ndarray  # (n_train,) bool


def epoch_plan(data: TaskData, opts: FinetuneOptions, epoch: int) -> list[Batch]:
    """The batches of one epoch (fixed by seed and epoch, so a resumed fit replays the same plan): every
    valid pair, every train discard and a fresh sample of train keeps, in length-bucketed batches of one
    task each, shuffled together."""
    rng = random.Random(opts.seed * 1_000 + epoch)
    discards = np.flatnonzero(data.train_discard).tolist()
    keeps = np.flatnonzero(~data.train_discard).tolist()
    keeps = rng.sample(keeps, min(len(keeps), round(opts.keeps_per_discard * len(discards))))
    train_idx = discards + keeps
    batches: list[Batch] = [(SR, b) for b in bucketed_batches(
        [len(s) for s in data.valid_seqs], opts.batch_size, rng)]
    batches += [(DISCARD_TASK, [train_idx[i] for i in b]) for b in bucketed_batches(
        [len(data.train_seqs[i]) for i in train_idx], opts.batch_size, rng)]
    rng.shuffle(batches)
    return batches


def batch_loss(net: FinetuneNet, data: TaskData, batch: Batch, opts: FinetuneOptions, pad: int, sep: int
               ) -> torch.Tensor:
    task, idx = batch
    seqs = data.valid_seqs if task == SR else data.train_seqs
    with autocast(opts.bf16):
        logits, regressed, d = net(collate([seqs[i] for i in idx], pad, sep))
    if task == SR:
        y_sr = torch.tensor(data.valid_targets[idx], dtype=torch.float32)
        dist = -(soft_targets(y_sr, opts.sigma) * logits.float().log_softmax(-1)).sum(-1).mean()
        return dist + opts.mse_weight * torch.nn.functional.mse_loss(regressed.float(), y_sr)
    y = torch.tensor(data.train_discard[idx], dtype=torch.float32)
    return opts.discard_weight * torch.nn.functional.binary_cross_entropy_with_logits(d.float(), y)


class Checkpoint:
    """`path` holds the training state; it is only used again by a fit with the same options and data."""

    def __init__(self, path: Path, key: dict[str, Any], every_s: float = 300.0) -> None:
        self.path, self.key, self.every_s = path, key, every_s
        self.last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        state = cast(dict[str, Any], torch.load(self.path, weights_only=False))
        if state.get("key") != self.key:
            log.warning("ignoring the checkpoint %s: it was written by a fit with other options", self.path)
            return None
        return state

    def save(self, state: dict[str, Any], force: bool = False) -> None:
        if not force and time.monotonic() - self.last < self.every_s:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.partial")
        torch.save({**state, "key": self.key}, partial)
        os.replace(partial, self.path)
        self.last = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _state(net: FinetuneNet, opt: Any, sched: Any, epoch: int, done: int, losses: list[float]
           ) -> dict[str, Any]:
    return {"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch,
            "batch": done, "losses": losses}


def fit_net(net: FinetuneNet, data: TaskData, opts: FinetuneOptions, pad: int, sep: int,
            checkpoint: Checkpoint) -> list[float]:
    """Train `net` in place (resuming from `checkpoint` when it matches); the mean loss of each epoch."""
    torch.manual_seed(opts.seed)
    plans = [epoch_plan(data, opts, e) for e in range(opts.epochs)]
    steps = sum(len(p) for p in plans)
    opt, sched = _optimizer(cast(Any, net), EncoderConfig(lr=opts.lr, head_lr=opts.head_lr,
                                                          warmup=opts.warmup), steps)
    start_epoch, start_batch, losses = 0, 0, []
    state = checkpoint.load()
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, start_batch, losses = state["epoch"], state["batch"], state["losses"]
        log.info("resuming the fine-tuning at epoch %d, batch %d", start_epoch + 1, start_batch)
    net.train()
    for epoch in range(start_epoch, opts.epochs):
        def on_step(done: int, e: int = epoch) -> None:
            checkpoint.save(_state(net, opt, sched, e, done, losses))

        losses.append(_run_epoch(net, data, opts, plans[epoch], (opt, sched), (pad, sep), on_step,
                                 start_batch if epoch == start_epoch else 0,
                                 f"fine-tune epoch {epoch + 1}/{opts.epochs}"))
        checkpoint.save(_state(net, opt, sched, epoch + 1, 0, losses), force=True)
    net.eval()
    return losses


def _run_epoch(net: FinetuneNet, data: TaskData, opts: FinetuneOptions, plan: Sequence[Batch],
               optim: tuple[Any, Any], ids: tuple[int, int], on_step: Any, skip: int, label: str) -> float:
    """One epoch from batch `skip` on; `on_step(done)` after each step (the checkpoint); the mean loss."""
    from tqdm import tqdm

    opt, sched = optim
    total, seen = 0.0, 0
    bar = tqdm(total=len(plan), desc=label, unit="batch", initial=skip)
    for done, batch in enumerate(plan[skip:], start=skip + 1):
        loss = batch_loss(net, data, batch, opts, *ids)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(batch[1])
        seen += len(batch[1])
        bar.update(1)
        bar.set_postfix(loss=f"{total / seen:.3f}")
        on_step(done)
    bar.close()
    return total / max(seen, 1)
