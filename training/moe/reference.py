"""The token-level MoE in transformers: what `empathy train moe` trains and what the vLLM model must equal.

The base Llama is loaded as is; averaged modules get the experts' mean delta merged into their weight;
routed modules become `RoutedLinear`s (base linear + gated LoRA deltas). Each decoder layer has a gate
on its MLP input (and, when attention is routed too, one on its attention input); a forward pre-hook
computes the gate's probabilities once per layer and the layer's routed linears read them, so down_proj
uses the same per-token gate as gate_proj/up_proj. Only the gates have trainable parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from empathy.moe.lora_pack import (
    ATTENTION,
    ExpertLoRA,
    ExpertSpec,
    averaged_delta,
    expert_mask,
    gate_probs,
    layer_kinds,
    pack,
    routed_delta,
)


class LayerGate(nn.Linear):
    """Linear hidden -> experts, zero-initialised (an untrained MoE is the 0.5 blend). `current` holds the
    probabilities of the last forward pass, read by the layer's routed linears."""

    def __init__(self, hidden: int, n_experts: int) -> None:
        super().__init__(hidden, n_experts, bias=True)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self.current: torch.Tensor | None = None

    def compute(self, x: torch.Tensor) -> None:
        self.current = gate_probs(super().forward(x.to(self.weight.dtype)))


class RoutedLinear(nn.Module):
    lora_a: torch.Tensor  # buffers (register_buffer)
    lora_b: torch.Tensor
    mask: torch.Tensor

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
                 gate: LayerGate) -> None:
        super().__init__()
        self.base = base
        dtype = base.weight.dtype
        self.register_buffer("lora_a", a.to(dtype), persistent=False)
        self.register_buffer("lora_b", b.to(dtype), persistent=False)
        self.register_buffer("mask", mask.to(dtype), persistent=False)
        self._gate = (gate,)  # a reference, not a submodule: the gate belongs to the layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self._gate[0].current
        assert g is not None, "the layer's gate runs in a forward pre-hook before its routed linears"
        return self.base(x) + routed_delta(x, g.to(x.dtype), self.lora_a, self.lora_b, self.mask)


def _linear(layer: nn.Module, module: str) -> nn.Linear:
    return getattr(layer.self_attn if module in ATTENTION else layer.mlp, module)


def _hook(gate: LayerGate) -> Any:
    def pre_hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        gate.compute(args[0] if args else kwargs["hidden_states"])

    return pre_hook


class MoeReference(nn.Module):
    """`model` is the patched transformers causal LM; `gates[str(layer)][kind]` its gates."""

    def __init__(self, model: nn.Module, experts: Sequence[ExpertLoRA], routed: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        self.gates = nn.ModuleDict()
        lm: Any = model  # a transformers causal LM (config, model.layers)
        hidden, n = lm.config.hidden_size, len(experts)
        targets = {t for e in experts for t in e.targets}
        specs = [ExpertSpec.of(e) for e in experts]
        for index, layer in enumerate(lm.model.layers):
            self._merge_averaged(layer, index, experts, targets - set(routed))
            kinds = layer_kinds(specs, routed, index)
            gates = {kind: LayerGate(hidden, n) for kind in kinds}
            self.gates[str(index)] = nn.ModuleDict(gates)
            for kind, gate in gates.items():
                (layer.mlp if kind == "mlp" else layer.self_attn).register_forward_pre_hook(
                    _hook(gate), with_kwargs=True)
                for module in kinds[kind]:
                    self._route(layer, index, module, experts, gate)
        self.gates.to(next(model.parameters()).device)

    @staticmethod
    def _merge_averaged(layer: nn.Module, index: int, experts: Sequence[ExpertLoRA], modules: set[str]
                        ) -> None:
        for module in modules:
            delta = averaged_delta(experts, index, module)
            if delta is not None:
                weight = _linear(layer, module).weight
                weight.data += delta.to(weight.dtype)

    @staticmethod
    def _route(layer: nn.Module, index: int, module: str, experts: Sequence[ExpertLoRA], gate: LayerGate
               ) -> None:
        base = _linear(layer, module)
        a, b = pack(experts, index, [module], [base.out_features])
        mask = expert_mask([ExpertSpec.of(e) for e in experts], [module], index)
        parent = layer.self_attn if module in ATTENTION else layer.mlp
        setattr(parent, module, RoutedLinear(base, a, b, mask, gate))

    def forward(self, **kwargs: Any) -> Any:
        return self.model(**kwargs)

    def gate_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.gates.state_dict().items()}

    def load_gates(self, state: Mapping[str, torch.Tensor]) -> None:
        self.gates.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})


def build_reference(base_model: str | Path, experts: Sequence[ExpertLoRA], routed: Sequence[str],
                    gates: Mapping[str, torch.Tensor] | None = None, dtype: torch.dtype = torch.float32
                    ) -> MoeReference:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype)
    moe = MoeReference(model, experts, routed)
    if gates is not None:
        moe.load_gates(gates)
    return moe.eval()


def load_reference(folder: Path, dtype: torch.dtype = torch.float32) -> MoeReference:
    """The transformers MoE of an artifact folder (the same weights vLLM serves)."""
    from empathy.moe.artifact import CONFIG_KEY, experts_from, read_artifact, resolve_base

    config, tensors = read_artifact(folder)
    section = config[CONFIG_KEY]
    experts = experts_from(tensors, section, int(config["num_hidden_layers"]))
    gates = {k.removeprefix("gates."): v for k, v in tensors.items() if k.startswith("gates.")}
    return build_reference(resolve_base(folder, section), experts, section["routed"], gates, dtype)
