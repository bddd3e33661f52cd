"""Pure tensor maths of the token-level MoE, shared by the transformers reference and the vLLM model.

One decoder layer, E experts with LoRA deltas s_e * B_e @ A_e on a target module, a per-token gate
g(h) = softmax(W_g h + b_g) over the experts. A routed module computes

    y = W x + sum_e g_e(h) * s_e * B_e @ A_e @ x = W x + ((x @ A^T) * (g @ M)) @ B^T

with A = [A_1; A_2] (ranks stacked), B = [s_1 B_1 | s_2 B_2] (scalings folded in) and M the 0/1 matrix
[E, R] that says which rank column belongs to which expert. A packed projection (vLLM's qkv_proj or
gate_up_proj) stacks its sub-modules' columns and puts each sub-module's B rows in its own output slice
(zeros elsewhere), so one shrink and one expand serve the whole projection. An averaged module (attention
by default, as mergoo does) gets the fixed mean of the experts' deltas merged into its weight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from empathy.errors import ModelError

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
PEFT_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


@dataclass(frozen=True)
class ExpertLoRA:
    """One expert: its LoRA scaling and (A [r, in], B [out, r]) per (layer, module)."""

    name: str
    scaling: float
    modules: Mapping[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]

    @property
    def rank(self) -> int:
        return int(next(iter(self.modules.values()))[0].shape[0]) if self.modules else 0

    @property
    def targets(self) -> list[str]:
        return sorted({module for _, module in self.modules})

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.modules})

    def delta(self, layer: int, module: str) -> torch.Tensor | None:
        """s * B @ A in float32, or None when the expert does not adapt this module."""
        pair = self.modules.get((layer, module))
        return None if pair is None else self.scaling * (pair[1].float() @ pair[0].float())


def parse_peft(name: str, tensors: Mapping[str, torch.Tensor], scaling: float, n_layers: int) -> ExpertLoRA:
    """An expert from PEFT's adapter tensors (`...layers.3.mlp.up_proj.lora_A.weight`). The layers it adapts
    (all, or e.g. the last N) must each adapt the same modules: the artifact stores one rank, one target list
    and one layer list per expert."""
    found: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = PEFT_KEY.search(key)
        if match is None:
            raise ModelError(f"expert {name!r}: tensor {key!r} is not a LoRA A/B of a decoder layer; the MoE "
                             "composes plain LoRA experts of Llama-style decoder layers only.")
        layer, module, side = int(match[1]), match[2], match[3]
        found.setdefault((layer, module), {})[side] = tensor
    return checked_expert(name, scaling, {k: (v["A"], v["B"]) for k, v in found.items()}, n_layers)


Modules = dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]


def checked_expert(name: str, scaling: float, modules: Modules, n_layers: int) -> ExpertLoRA:
    expert = ExpertLoRA(name, scaling, modules)
    unknown = set(expert.targets) - set(ATTENTION) - set(MLP)
    if unknown:
        raise ModelError(f"expert {name!r} adapts {sorted(unknown)}; the MoE knows {ATTENTION + MLP} only.")
    missing = [(layer, m) for layer in expert.layers for m in expert.targets if (layer, m) not in modules]
    if missing or any(layer >= n_layers for layer, _ in modules):
        raise ModelError(f"expert {name!r} does not adapt the same modules in each of its layers "
                         f"(missing e.g. {missing[:3]}), or adapts a layer beyond the model's {n_layers}; "
                         "train it with one target list for all its layers.")
    if len({int(a.shape[0]) for a, _ in modules.values()}) > 1:
        raise ModelError(f"expert {name!r} has several LoRA ranks; train it with one rank (no rank_pattern).")
    return expert


@dataclass(frozen=True)
class ExpertSpec:
    """What the layout needs to know of an expert (from the artifact's config, before any tensor)."""

    rank: int
    targets: tuple[str, ...]
    layers: tuple[int, ...]

    @classmethod
    def of(cls, expert: ExpertLoRA) -> ExpertSpec:
        return cls(expert.rank, tuple(expert.targets), tuple(expert.layers))


def columns(specs: Sequence[ExpertSpec], modules: Sequence[str], layer: int) -> list[tuple[str, int]]:
    """(module, expert) of each rank block of a packed group in one layer, in column order."""
    return [(m, e) for m in modules for e, spec in enumerate(specs)
            if m in spec.targets and layer in spec.layers]


def expert_mask(specs: Sequence[ExpertSpec], modules: Sequence[str], layer: int) -> torch.Tensor:
    """M [E, R]: 1 where rank column R belongs to expert E."""
    blocks = columns(specs, modules, layer)
    mask = torch.zeros(len(specs), sum(specs[e].rank for _, e in blocks))
    start = 0
    for _, e in blocks:
        mask[e, start:start + specs[e].rank] = 1.0
        start += specs[e].rank
    return mask


def pack(experts: Sequence[ExpertLoRA], layer: int, modules: Sequence[str], out_sizes: Sequence[int]
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [R, in], B [sum(out_sizes), R]) of a packed group, scalings folded into B, float32."""
    blocks = columns([ExpertSpec.of(e) for e in experts], modules, layer)
    offsets = dict(zip(modules, [sum(out_sizes[:i]) for i in range(len(modules))], strict=True))
    a_rows, b_cols = [], []
    for module, e in blocks:
        a, b = experts[e].modules[(layer, module)]
        col = torch.zeros(sum(out_sizes), a.shape[0])
        col[offsets[module]:offsets[module] + b.shape[0]] = experts[e].scaling * b.float()
        a_rows.append(a.float())
        b_cols.append(col)
    if not blocks:
        return torch.zeros(0, 0), torch.zeros(sum(out_sizes), 0)
    return torch.cat(a_rows), torch.cat(b_cols, dim=1)


def averaged_delta(experts: Sequence[ExpertLoRA], layer: int, module: str) -> torch.Tensor | None:
    """The fixed mean of the experts' deltas of a module (None when no expert adapts it)."""
    deltas = [d for e in experts if (d := e.delta(layer, module)) is not None]
    return torch.stack(deltas).sum(0) / len(experts) if deltas else None


def gate_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over experts in float32, cast back (as mergoo does)."""
    return torch.softmax(logits.float(), dim=-1).to(logits.dtype)


def routed_delta(x: torch.Tensor, g: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """sum_e g_e * s_e * B_e @ A_e @ x for a packed group; x [..., in], g [..., E]."""
    return ((x @ a.t()) * (g @ mask)) @ b.t()


def forced_gate_bias(n_experts: int, expert: int, margin: float = 60.0) -> torch.Tensor:
    """Gate biases that put (to float32 precision) all the weight on one expert when the weights are 0."""
    bias = torch.full((n_experts,), -margin)
    bias[expert] = margin
    return bias


def layer_kinds(specs: Sequence[ExpertSpec], routed: Sequence[str], layer: int) -> dict[str, list[str]]:
    """The gates a layer needs: "mlp" and/or "attn" -> the routed modules some expert adapts there."""
    kinds = {"mlp": [m for m in routed if m not in ATTENTION], "attn": [m for m in routed if m in ATTENTION]}
    present = {kind: [m for m in mods if columns(specs, [m], layer)] for kind, mods in kinds.items()}
    return {kind: mods for kind, mods in present.items() if mods}
