"""A cross-encoder judge: MiniLM reads `context [SEP] response` and predicts S and R.

The head gives, per criterion, a distribution over the integer scores 0..10; the prediction is its expected
value. Trained end to end with cross-entropy against a Gaussian-smoothed target around the teacher's score
("dist": the teacher's labels are clustered integers, and neighbouring scores are near-misses, not errors),
or with plain MSE on a 2-output head ("mse").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

N_SCORES = 11  # integer scores 0..10


@dataclass(frozen=True)
class EncoderConfig:
    max_len: int = 192
    max_response_tokens: int = 64
    epochs: int = 3
    batch_size: int = 16
    lr: float = 8e-5
    head_lr: float = 1e-3
    warmup: float = 0.1
    loss: Literal["dist", "mse"] = "dist"
    sigma: float = 1.0
    seed: int = 0
    freeze_embeddings: bool = True  # the word-embedding table is 45% of MiniLM; updating it is slow on CPU
    limit_train: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class CrossEncoderScorer(nn.Module):
    """Encoder + mean pooling + a linear head (2 x 11 logits for "dist", 2 values for "mse")."""

    grid: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, encoder: nn.Module, hidden: int, loss: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss_kind = loss
        self.head = nn.Linear(hidden, 2 * N_SCORES if loss == "dist" else 2)
        self.register_buffer("grid", torch.arange(N_SCORES, dtype=torch.float32), persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw head output: (b, 2, 11) logits or (b, 2) scores."""
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out = self.head(pooled)
        return out.view(-1, 2, N_SCORES) if self.loss_kind == "dist" else out + 5.0

    def expected(self, out: torch.Tensor) -> torch.Tensor:
        """(b, 2) scores from the raw output."""
        if self.loss_kind == "dist":
            return (out.softmax(-1) * self.grid).sum(-1)
        return out.clamp(0.0, 10.0)


def build_model(encoder_path: Path, cfg: EncoderConfig) -> tuple[CrossEncoderScorer, Any]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    encoder = AutoModel.from_pretrained(str(encoder_path))
    if cfg.freeze_embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    return CrossEncoderScorer(encoder, int(encoder.config.hidden_size), cfg.loss), tokenizer


def encode_pairs(tokenizer: Any, contexts: Sequence[str], responses: Sequence[str],
                 cfg: EncoderConfig) -> list[list[int]]:
    """`[CLS] context-tail [SEP] response [SEP]` ids: the response is capped, the context keeps its end
    (the turn being answered matters most)."""
    ctx_ids = tokenizer(list(contexts), add_special_tokens=False)["input_ids"]
    resp_ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = []
    for c, r in zip(ctx_ids, resp_ids, strict=True):
        r = r[: cfg.max_response_tokens]
        room = max(cfg.max_len - 3 - len(r), 0)
        c = c[len(c) - room:] if room else []
        out.append([cls, *c, sep, *r, sep])
    return out


def collate(seqs: Sequence[list[int]], pad_id: int, sep_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch; token type 1 marks the response (after the first [SEP])."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        types[i, s.index(sep_id) + 1: len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def soft_targets(scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """(b, 2) scores -> (b, 2, 11) Gaussian-smoothed distributions over 0..10."""
    grid = torch.arange(N_SCORES, dtype=torch.float32)
    logits = -((grid.view(1, 1, -1) - scores.unsqueeze(-1)) ** 2) / (2 * sigma**2)
    return logits.softmax(-1)


def loss_fn(model: CrossEncoderScorer, out: torch.Tensor, targets: torch.Tensor,
            sigma: float) -> torch.Tensor:
    if model.loss_kind == "dist":
        return -(soft_targets(targets, sigma) * out.log_softmax(-1)).sum(-1).mean()
    return nn.functional.mse_loss(out, targets)
