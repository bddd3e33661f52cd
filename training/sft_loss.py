"""TRL's SFT trainer with a reply-only loss head: the LM head runs on the reply positions only, in fp32.

Without Triton (on a CPU) TRL's fused LM head projects every position through the 49k-token vocabulary, the
prompt included, and computes entropy and token accuracy on the way. Here only the positions whose next token
is a reply token (label != -100) are projected, in fp32, and nothing else: the same loss (to 1e-5, checked in
tests/training/test_experts.py) at a fraction of the head's cost. The backbone runs under the trainer's
mixed precision.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer


def reply_loss(model: Any, inputs: dict[str, torch.Tensor], num_items: Any = None) -> torch.Tensor:
    """Mean next-token NLL over the labelled positions (sum / `num_items` when the trainer counts them)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = inputs["labels"]
    kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    hidden = base.get_decoder()(**kwargs, use_cache=False).last_hidden_state
    if "shift_labels" in kwargs:
        raise NotImplementedError("pre-shifted labels (context parallelism) are not supported here")
    target = labels[:, 1:]
    mask = target != -100
    weight = base.get_output_embeddings().weight
    with torch.autocast(hidden.device.type, enabled=False):
        logits = hidden[:, :-1][mask].float() @ weight.float().T
        total = torch.nn.functional.cross_entropy(logits, target[mask], reduction="sum")
    count = num_items if num_items is not None else mask.sum()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


class ReplyLossSFTTrainer(SFTTrainer):  # type: ignore[misc]
    """`SFTTrainer` whose training loss is `reply_loss` (no entropy / token-accuracy metrics)."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        # The backbone is called directly (not through the wrapped `model.forward`), so the trainer's
        # mixed precision is applied here.
        with self.accelerator.autocast():
            loss = reply_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss
