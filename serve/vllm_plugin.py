"""A vLLM general plugin (entry point `vllm.general_plugins` in pyproject.toml) that fixes mixed LoRA batches
on CPU, and registers the out-of-tree model `EmpathyMoeForCausalLM` (the experts' token-level MoE,
`serve/moe_model.py`, imported by vLLM only when it loads such a model). vLLM loads the plugin in each of its
processes.

Why: vLLM's CPU LoRA kernels (`vllm/lora/ops/torch_ops/lora_ops.py`, vLLM 0.32) gather each row's adapter
with `weights[lora_indices]`, and a row without a LoRA has index -1, which torch indexing reads as the LAST
adapter slot. Once that slot holds an adapter, a base-model request that shares a batch with LoRA requests
is computed WITH that adapter (`bench/lora_mixed_batch.py` shows it). The GPU kernels skip index -1. Here the
CPU ops zero the LoRA contribution of rows with index -1: the shrink's output rows and the expand's input
rows, so each of the two ops alone is enough. The cost is a comparison per op: base-only traffic measured
123 vs 147 and 184 vs 156 tokens/s without vs with it in two runs, i.e. within this CPU's run-to-run noise.
(Serving `base` as an all-zero LoRA also fixes it, but puts base traffic on the LoRA path: 0.38x tokens/s.)
Disable with `VLLM_PLUGINS` set to a list without `empathy_cpu_lora_fix`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

PLUGIN_NAME = "empathy_cpu_lora_fix"
SHRINK_OPS = ("bgmv_shrink",)
EXPAND_OPS = ("bgmv_expand", "bgmv_expand_slice")
_MARK = "_empathy_no_lora_masked"

log = logging.getLogger("vllm.empathy_cpu_lora_fix")  # under "vllm" so vLLM's log handler prints it


def masked_shrink(op: Callable[..., None]) -> Callable[..., None]:
    """`op(inputs, weights, output, indices, ...)` with the output rows of index -1 set to zero."""
    @functools.wraps(op)
    def shrink(inputs: Any, weights: Any, output: Any, indices: Any, *args: Any, **kwargs: Any) -> None:
        op(inputs, weights, output, indices, *args, **kwargs)
        no_lora = indices < 0
        if bool(no_lora.any()) and output.shape[0] == no_lora.shape[0]:
            output[no_lora] = 0

    return shrink


def masked_expand(op: Callable[..., None]) -> Callable[..., None]:
    """`op(inputs, weights, output, indices, ...)` with the input rows of index -1 set to zero (so they add
    nothing to the output)."""
    @functools.wraps(op)
    def expand(inputs: Any, weights: Any, output: Any, indices: Any, *args: Any, **kwargs: Any) -> None:
        no_lora = indices < 0
        if bool(no_lora.any()) and inputs.shape[0] == no_lora.shape[0]:
            inputs = inputs.masked_fill(no_lora.unsqueeze(-1), 0)
        op(inputs, weights, output, indices, *args, **kwargs)

    return expand


def patch(ops_module: Any, bound_in: Any) -> bool:
    """Wrap the ops in `ops_module` (which the sgmv_* ops call) and the names `bound_in` imported from it.
    Returns False (and changes nothing) when the ops are not there."""
    if getattr(ops_module, _MARK, False):
        return True
    names = (*SHRINK_OPS, *EXPAND_OPS)
    if not all(callable(getattr(ops_module, name, None)) for name in names):
        return False
    for name in names:
        wrapped = (masked_shrink if name in SHRINK_OPS else masked_expand)(getattr(ops_module, name))
        setattr(ops_module, name, wrapped)
        if getattr(bound_in, name, None) is not None:
            setattr(bound_in, name, wrapped)
    setattr(ops_module, _MARK, True)
    return True


MOE_ARCHITECTURE = "EmpathyMoeForCausalLM"  # the token-level MoE of the experts (serve/moe_model.py)


def register_moe_model() -> None:
    """Make `architectures: ["EmpathyMoeForCausalLM"]` (an `empathy train moe` artifact) loadable. By name:
    the model module (and with it torch, vLLM's layers and our training package) is imported only when
    vLLM builds that model."""
    try:
        from vllm import ModelRegistry
    except ImportError:
        return
    if MOE_ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(MOE_ARCHITECTURE, "serve.moe_model:EmpathyMoeForCausalLM")


def register() -> None:
    """vLLM's entry point: register the MoE model; patch the CPU LoRA ops when this process runs on the CPU
    platform."""
    register_moe_model()
    try:
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return
        from vllm.lora.ops.torch_ops import lora_ops
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError:
        return
    if patch(lora_ops, punica_cpu):
        log.debug("%s: CPU LoRA ops give no adapter to rows without a LoRA", PLUGIN_NAME)
    else:
        log.warning("%s: vLLM's CPU LoRA ops are not where this plugin expects them; base-model rows of "
                    "mixed LoRA batches may get an adapter (check bench/lora_mixed_batch.py)", PLUGIN_NAME)
