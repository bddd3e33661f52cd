"""Our vLLM plugin (serve/vllm_plugin.py) on vLLM's real CPU LoRA ops: rows without a LoRA (index -1) get no
adapter, rows with one are unchanged; and the installed package registers it where vLLM looks."""

from __future__ import annotations

import inspect
import types
from importlib.metadata import entry_points

import torch
from vllm.lora.ops.torch_ops import lora_ops

from serve.vllm_plugin import PLUGIN_NAME, patch

SLOTS, RANK, HIDDEN, OUT = 3, 4, 8, 6


def ops_copy() -> types.SimpleNamespace:
    """A namespace holding vLLM's original ops, so patching it leaves the real module alone. Unwrapped: any
    test that builds a vLLM object in this process makes vLLM load our plugin, which patches the module."""
    names = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")
    return types.SimpleNamespace(**{name: inspect.unwrap(getattr(lora_ops, name)) for name in names})


def test_rows_without_a_lora_get_no_adapter_and_the_others_are_unchanged() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, HIDDEN)
    a = torch.randn(SLOTS, 1, RANK, HIDDEN)
    b = torch.randn(SLOTS, 1, OUT, RANK)
    indices = torch.tensor([-1, 0, 2, -1])
    fixed = ops_copy()
    bound = types.SimpleNamespace(bgmv_shrink=fixed.bgmv_shrink)
    assert patch(fixed, bound) and bound.bgmv_shrink is fixed.bgmv_shrink

    def lora(ops: types.SimpleNamespace) -> torch.Tensor:
        buffer, out = torch.zeros(4, RANK), torch.zeros(4, OUT)
        ops.bgmv_shrink(x, a, buffer, indices, 1.0)
        ops.bgmv_expand(buffer, b, out, indices, True)
        return out

    as_is, masked = lora(ops_copy()), lora(fixed)
    assert as_is[0].abs().sum() > 0  # what vLLM does: index -1 reads the last slot
    assert torch.equal(masked[[0, 3]], torch.zeros(2, OUT))
    assert torch.equal(masked[[1, 2]], as_is[[1, 2]])
    # The expand alone masks too (a caller that feeds it without our shrink).
    out = torch.zeros(4, OUT)
    fixed.bgmv_expand_slice(torch.ones(4, RANK), b, out, indices, 0, OUT, True)
    assert torch.equal(out[[0, 3]], torch.zeros(2, OUT)) and out[1].abs().sum() > 0


def test_patching_twice_wraps_once_and_missing_ops_change_nothing() -> None:
    ops = ops_copy()
    assert patch(ops, types.SimpleNamespace()) and patch(ops, types.SimpleNamespace())
    assert ops.bgmv_shrink.__wrapped__ is inspect.unwrap(lora_ops.bgmv_shrink)
    assert not patch(types.SimpleNamespace(bgmv_shrink=ops.bgmv_shrink), types.SimpleNamespace())


def test_the_installed_package_registers_the_plugin_with_vllm() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert plugins.get(PLUGIN_NAME) == "serve.vllm_plugin:register"
