"""An all-zero LoRA adapter, so that the base model can be served through the LoRA path.

Why: vLLM's CPU LoRA kernels (`vllm/lora/ops/torch_ops/lora_ops.py`, vLLM 0.32) gather each row's adapter
with `weights[lora_indices]`, and a request without a LoRA has index -1, which Python indexing reads as the
LAST adapter slot. Once every slot is in use, a base-model request that shares a batch with LoRA requests is
computed with whichever adapter sits in the last slot (`bench/lora_mixed_batch.py` shows it). The GPU
kernels skip index -1, the CPU ones do not. Serving `base` as a LoRA whose delta is exactly zero gives every
row a valid index, so mixed batches are right on every backend, at the cost of one adapter slot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# PEFT fields that would give some modules another rank or scale than the zero tensors written here.
_PER_MODULE_FIELDS = ("rank_pattern", "alpha_pattern")


def _shapes(template: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(template / ADAPTER_WEIGHTS), framework="numpy") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118


def zero_tensors(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Rank-1 zero `lora_A` (1, in) and `lora_B` (out, 1) for every module of a PEFT adapter's tensors."""
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if ".lora_A." in key:
            out[key] = np.zeros((1, shape[-1]), dtype=np.float32)
        elif ".lora_B." in key:
            out[key] = np.zeros((shape[0], 1), dtype=np.float32)
    return out


def identity_config(template_config: dict[str, object]) -> dict[str, object]:
    config = {k: v for k, v in template_config.items() if k not in _PER_MODULE_FIELDS}
    config.update(r=1, lora_alpha=1, lora_dropout=0.0, use_rslora=False, use_dora=False)
    return config


def write_identity_adapter(template: Path, cache_root: Path | None = None) -> Path:
    """An all-zero rank-1 adapter with the modules of the PEFT adapter folder `template`, written once under
    `cache_root` (default: the system temp dir) in a folder named by a hash of those modules, and reused."""
    template = Path(template)
    shapes = _shapes(template)
    config = identity_config(json.loads((template / ADAPTER_CONFIG).read_text()))
    digest = hashlib.sha256(json.dumps([sorted(shapes.items()), config], sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    root = Path(cache_root) if cache_root else Path(tempfile.gettempdir()) / "empathy-identity-lora"
    folder = root / digest
    if (folder / ADAPTER_WEIGHTS).is_file() and (folder / ADAPTER_CONFIG).is_file():
        return folder
    from safetensors.numpy import save_file

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
    save_file(zero_tensors(shapes), str(staging / ADAPTER_WEIGHTS))
    (staging / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    try:
        os.replace(staging, folder)  # atomic: two engines starting at once both end up with one folder
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process won the race with the same content
    return folder
