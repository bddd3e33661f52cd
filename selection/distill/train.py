"""Fine-tuning and batched inference of the cross-encoder judge (CPU-friendly: length-bucketed batches)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from selection.distill.encoder import CrossEncoderScorer, EncoderConfig, collate, loss_fn


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (shuffle, sort within chunks of 50 batches, shuffle batches):
    little padding, still random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start: start + chunk], key=lambda i: lengths[i])
        batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start: start + batch_size]


def _optimizer(model: CrossEncoderScorer, cfg: EncoderConfig, steps: int
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    groups = [
        {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": cfg.lr},
        {"params": list(model.head.parameters()), "lr": cfg.head_lr},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    warm = max(int(cfg.warmup * steps), 1)

    def schedule(step: int) -> float:
        return min((step + 1) / warm, max(steps - step, 0) / max(steps - warm, 1))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def fit_encoder(model: CrossEncoderScorer, seqs: Sequence[list[int]], targets: np.ndarray,
                cfg: EncoderConfig, pad_id: int, sep_id: int) -> list[float]:
    """Train in place; returns the mean loss of each epoch."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    lengths = [len(s) for s in seqs]
    steps = cfg.epochs * -(-len(seqs) // cfg.batch_size)
    opt, sched = _optimizer(model, cfg, steps)
    y = torch.tensor(targets, dtype=torch.float32)
    model.train()
    epoch_losses = []
    for epoch in range(cfg.epochs):
        batches = bucketed_batches(lengths, cfg.batch_size, rng)
        total = 0.0
        for idx in tqdm(batches, desc=f"fine-tune epoch {epoch + 1}/{cfg.epochs}", unit="batch"):
            out = model(collate([seqs[i] for i in idx], pad_id, sep_id))
            loss = loss_fn(model, out, y[idx], cfg.sigma)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        epoch_losses.append(total / len(seqs))
    model.eval()
    return epoch_losses


def predict_encoder(model: CrossEncoderScorer, seqs: Sequence[list[int]], pad_id: int, sep_id: int,
                    batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """(n, 2) predicted S, R in input order."""
    model.eval()
    out = np.zeros((len(seqs), 2), dtype=np.float32)
    batches = list(sorted_batches([len(s) for s in seqs], batch_size))
    with torch.inference_mode():
        for idx in tqdm(batches, desc="predict", unit="batch", disable=not progress):
            pred = model.expected(model(collate([seqs[i] for i in idx], pad_id, sep_id)))
            out[idx] = pred.float().numpy()
    return out
