"""`EmpathyMoeForCausalLM`: the token-level MoE of two LoRA experts as a vLLM model (out-of-tree).

vLLM's own Llama with one change per decoder layer: a gate (a float32 linear on the layer's MLP input,
softmax over the experts) mixes the experts' LoRA deltas at the MLP projections, token by token:

    gate_up = W_gu x + ((x @ A_gu^T) * (g @ M)) @ B_gu^T,   down = W_d h + ((h @ A_d^T) * (g @ M)) @ B_d^T

(`empathy/moe/lora_pack.py` has the packing: both experts' ranks stacked, scalings folded into B, M maps
rank columns to experts). Attention takes the experts' mean delta merged into its weights at load time,
or, with the artifact's `routed = all`, a gate of its own on the attention input. Plain torch matmuls, so
it runs on vLLM's CPU and GPU backends alike, batched and paged like any model; vLLM's LoRA machinery is
not used (the artifact is served as a model of its own). Registered by `serve/vllm_plugin.py`; loaded
from an artifact folder (`empathy/moe/artifact.py`): the base weights are read from the base model's
folder, the experts' LoRA tensors and the gates from the artifact's `moe.safetensors`.
Tensor and pipeline parallelism are not supported (one device per engine; replicate engines to scale).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.distributed import get_pp_group, get_tensor_model_parallel_world_size
from vllm.model_executor.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM
from vllm.model_executor.models.utils import extract_layer_index

from empathy.moe.artifact import CONFIG_KEY, FORMAT_VERSION, experts_from, resolve_base, specs
from empathy.moe.lora_pack import (
    ExpertLoRA,
    ExpertSpec,
    averaged_delta,
    columns,
    expert_mask,
    gate_probs,
    pack,
    routed_delta,
)

GROUPS = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
          "down": ("down_proj",)}


def moe_section(config: Any) -> dict[str, Any]:
    section = getattr(config, CONFIG_KEY, None)
    if not isinstance(section, dict):
        raise ValueError(f"config.json has no `{CONFIG_KEY}` section: this folder is not an empathy MoE "
                         "artifact (build one with `empathy train moe`).")
    if section.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"the MoE artifact has format {section.get('format_version')}, this code reads "
                         f"{FORMAT_VERSION}; rebuild it with `empathy train moe --force`.")
    return section


class RoutedDelta(nn.Module):
    """The gated LoRA deltas of one (packed) projection: A [R, in], B [out, R], mask [E, R]."""

    mask: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, expert_specs: Sequence[ExpertSpec], modules: Sequence[str], layer: int, in_size: int,
                 out_sizes: Sequence[int]) -> None:
        super().__init__()
        self.modules_ = tuple(modules)
        self.out_sizes = tuple(out_sizes)
        mask = expert_mask(expert_specs, modules, layer)
        self.lora_a = nn.Parameter(torch.zeros(mask.shape[1], in_size), requires_grad=False)
        self.lora_b = nn.Parameter(torch.zeros(sum(out_sizes), mask.shape[1]), requires_grad=False)
        self.register_buffer("mask", mask.to(self.lora_a.dtype), persistent=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return routed_delta(x, g, self.lora_a, self.lora_b, self.mask)

    def load(self, experts: Sequence[ExpertLoRA], layer: int) -> None:
        a, b = pack(experts, layer, self.modules_, self.out_sizes)
        self.lora_a.data.copy_(a.to(self.lora_a.dtype))
        self.lora_b.data.copy_(b.to(self.lora_b.dtype))


class Gate(nn.Module):
    """Linear hidden -> experts in float32; returns the softmax probabilities in the input's dtype."""

    def __init__(self, hidden: int, n_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_experts, hidden, dtype=torch.float32), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(n_experts, dtype=torch.float32), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gate_probs(nn.functional.linear(x.float(), self.weight, self.bias)).to(x.dtype)


class EmpathyMoeDecoderLayer(LlamaDecoderLayer):
    def __init__(self, vllm_config: VllmConfig, prefix: str = "", config: Any = None,
                 attn_layer_type: type[nn.Module] = LlamaAttention) -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix, config=config,
                         attn_layer_type=attn_layer_type)
        config = config or vllm_config.model_config.hf_config
        if get_tensor_model_parallel_world_size() != 1:
            raise ValueError("EmpathyMoeForCausalLM runs on one device per engine (tensor parallel size 1); "
                             "scale out with several engines behind the gateway (EMPATHY_UPSTREAMS).")
        section = moe_section(config)
        expert_specs, routed = specs(section), set(section["routed"])
        attn: Any = self.self_attn  # vLLM's LlamaAttention (q_size, kv_size, num_heads, head_dim)
        hidden, inter = config.hidden_size, config.intermediate_size
        shapes = {"qkv": (hidden, [attn.q_size, attn.kv_size, attn.kv_size]),
                  "o": (attn.num_heads * attn.head_dim, [hidden]), "gate_up": (hidden, [inter, inter]),
                  "down": (inter, [hidden])}
        index = extract_layer_index(prefix)
        self.routed = nn.ModuleDict({  # the groups some expert adapts in this layer (e.g. only the last N)
            name: RoutedDelta(expert_specs, GROUPS[name], index, *shapes[name])
            for name in GROUPS if routed & set(GROUPS[name]) and columns(expert_specs, GROUPS[name], index)
        })
        n = len(expert_specs)
        self.gate_mlp = Gate(hidden, n) if {"gate_up", "down"} & set(self.routed) else None
        self.gate_attn = Gate(hidden, n) if {"qkv", "o"} & set(self.routed) else None

    def _delta(self, group: str, x: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor | int:
        return self.routed[group](x, g) if g is not None and group in self.routed else 0

    def _attention(self, positions: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.gate_attn is None:
            return self.self_attn(positions=positions, hidden_states=h)
        attn: Any = self.self_attn
        g = self.gate_attn(h)
        qkv = attn.qkv_proj(h)[0] + self._delta("qkv", h, g)
        q, k, v = qkv.split([attn.q_size, attn.kv_size, attn.kv_size], dim=-1)
        q, k = attn.rotary_emb(positions, q, k)
        out = attn.attn(q, k, v)
        return attn.o_proj(out)[0] + self._delta("o", out, g)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_mlp is None:
            return self.mlp(x)
        mlp, g = self.mlp, self.gate_mlp(x)
        h = mlp.act_fn(mlp.gate_up_proj(x)[0] + self._delta("gate_up", x, g))
        return mlp.down_proj(h)[0] + self._delta("down", h, g)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, residual: torch.Tensor | None,
                **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self._attention(positions, hidden_states)
        hidden_states, residual = self.post_attention_layernorm(hidden_states, residual)
        return self._mlp(hidden_states), residual

    def load_moe(self, experts: Sequence[ExpertLoRA], layer: int, tensors: dict[str, torch.Tensor]) -> None:
        for routed in self.routed.values():
            assert isinstance(routed, RoutedDelta)
            routed.load(experts, layer)
        for kind, gate in (("mlp", self.gate_mlp), ("attn", self.gate_attn)):
            if gate is not None:
                gate.weight.data.copy_(tensors[f"gates.{layer}.{kind}.weight"].float())
                gate.bias.data.copy_(tensors[f"gates.{layer}.{kind}.bias"].float())


def base_weights(base: Path, experts: Sequence[ExpertLoRA], averaged: Sequence[str]
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """The base model's tensors (HF names), with the experts' mean delta added to averaged modules."""
    import re

    from safetensors import safe_open

    pattern = re.compile(r"model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.weight$")
    files = sorted(base.glob("*.safetensors"))
    if not files:
        raise ValueError(f"base model folder {base} has no *.safetensors files; prepare it with "
                         "`empathy train base-model` (or save the model with safetensors).")
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                tensor = handle.get_tensor(name)
                match = pattern.match(name)
                if match and match[2] in averaged:
                    delta = averaged_delta(experts, int(match[1]), match[2])
                    if delta is not None:
                        tensor = (tensor.float() + delta).to(tensor.dtype)
                yield name, tensor


class EmpathyMoeForCausalLM(LlamaForCausalLM):
    """vLLM's Llama whose decoder layers mix two LoRA experts per token (see the module docstring)."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "", **_: Any) -> None:
        if get_pp_group().world_size != 1:
            raise ValueError("EmpathyMoeForCausalLM does not support pipeline parallelism; use one device.")
        super().__init__(vllm_config=vllm_config, prefix=prefix, layer_type=EmpathyMoeDecoderLayer)
        self.moe_folder = Path(vllm_config.model_config.model)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        section = moe_section(self.config)
        own = dict(weights)  # moe.safetensors: the gates and the experts' LoRA tensors
        experts = experts_from(own, section, self.config.num_hidden_layers)
        base = resolve_base(self.moe_folder, section)
        loaded = set(super().load_weights(base_weights(base, experts, section["averaged"])))
        for index, layer in enumerate(self.model.layers):
            layer.load_moe(experts, index, own)
        moe_params = {name for name, _ in self.named_parameters() if ".routed." in name or ".gate_" in name}
        return loaded | moe_params
