"""Exact blends of two LoRA experts: delta(a) = a*dW_sens + (1-a)*dW_rat, by concatenating ranks.

For one target module an expert's delta is s * B @ A (A: r x in, B: out x r, s = its LoRA scaling). Then

    a*s_s*B_s@A_s + (1-a)*s_r*B_r@A_r = [a*s_s*B_s | (1-a)*s_r*B_r] @ [A_s ; A_r]

so the blend is an ordinary LoRA of rank r_s + r_r whose B carries both scalings; its config sets
lora_alpha = r (scaling 1, no rsLoRA), so any loader (PEFT, vLLM) reproduces the sum exactly, up to float
rounding. Pure functions over tensors and config dicts; reading and writing files is in `blend_files.py`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from empathy.errors import ConfigError, ModelError

LORA_A = ".lora_A.weight"
LORA_B = ".lora_B.weight"


def validate_grid(grid: Iterable[float]) -> list[float]:
    """Sorted unique weights; ConfigError for an empty grid or a weight outside [0, 1]."""
    weights = [float(w) for w in grid]
    bad = [w for w in weights if not (math.isfinite(w) and 0.0 <= w <= 1.0)]
    if bad:
        raise ConfigError(f"blend weights must lie in [0, 1]; got {bad}. Fix --grid or EMPATHY_BLEND_GRID, "
                          "e.g. --grid 0,0.25,0.5,0.75,1.")
    if not weights:
        raise ConfigError("the blend grid is empty; give at least one weight, e.g. --grid 0,0.5,1.")
    return sorted(set(weights))


def parse_grid(text: str) -> list[float]:
    try:
        return validate_grid(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"--grid {text!r} is not a comma-separated list of numbers, e.g. 0,0.5,1.") from exc


def format_weight(weight: float) -> str:
    return f"{weight:g}"


def blend_name(weight: float, experts_hash: str) -> str:
    return f"blend-{format_weight(weight)}-{experts_hash[:8]}"


def experts_hash(sens_digest: str, sens_scaling: float, rat_digest: str, rat_scaling: float) -> str:
    """Content hash of the pair: the weight files and the scalings that turn them into deltas."""
    payload = f"{sens_digest}:{sens_scaling!r}:{rat_digest}:{rat_scaling!r}"
    return hashlib.sha256(payload.encode()).hexdigest()


def lora_scaling(config: Mapping[str, Any], where: str) -> float:
    """The scaling PEFT applies to B @ A; per-module rank/alpha patterns are refused (no single scaling)."""
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ModelError(f"{where}: only plain LoRA adapters can be blended (found peft_type="
                         f"{config.get('peft_type')}, use_dora={config.get('use_dora')}).")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError(f"{where}: per-module rank_pattern/alpha_pattern is not supported by blends; "
                         "train the experts with one rank and alpha.")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def module_names(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    return sorted(key[: -len(LORA_A)] for key in tensors if key.endswith(LORA_A))


def check_compatible(sens: Mapping[str, torch.Tensor], rat: Mapping[str, torch.Tensor]) -> None:
    """ModelError unless both adapters target the same modules with the same (in, out) shapes."""
    names_s, names_r = set(module_names(sens)), set(module_names(rat))
    if names_s != names_r:
        only = sorted(names_s ^ names_r)[:4]
        raise ModelError(f"the experts target different modules (e.g. {only}); train both with the same "
                         "EMPATHY_LORA_TARGETS and base model.")
    for name in sorted(names_s):
        shape_s = (sens[name + LORA_A].shape[1], sens[name + LORA_B].shape[0])
        shape_r = (rat[name + LORA_A].shape[1], rat[name + LORA_B].shape[0])
        if shape_s != shape_r:
            raise ModelError(f"module {name}: (in, out) = {shape_s} in the sensibility expert but {shape_r} "
                             "in the rationality expert; they are LoRAs of different base models.")


def blend_tensors(sens: Mapping[str, torch.Tensor], sens_scaling: float, rat: Mapping[str, torch.Tensor],
                  rat_scaling: float, weight: float) -> dict[str, torch.Tensor]:
    """The rank-concatenated A and B of the blend (to be used with scaling 1), in each expert's dtype."""
    out: dict[str, torch.Tensor] = {}
    for name in module_names(sens):
        a_s, a_r = sens[name + LORA_A].float(), rat[name + LORA_A].float()
        b_s, b_r = sens[name + LORA_B].float(), rat[name + LORA_B].float()
        dtype = sens[name + LORA_A].dtype
        out[name + LORA_A] = torch.cat([a_s, a_r], dim=0).to(dtype).contiguous()
        b_cat = torch.cat([weight * sens_scaling * b_s, (1.0 - weight) * rat_scaling * b_r], dim=1)
        out[name + LORA_B] = b_cat.to(dtype).contiguous()
    return out


def blend_config(sens_config: Mapping[str, Any], rank: int) -> dict[str, Any]:
    """The expert's config with the concatenated rank and alpha = rank, so the scaling is exactly 1."""
    config = dict(sens_config)
    config.update(r=rank, lora_alpha=rank, use_rslora=False, lora_dropout=0.0, rank_pattern={},
                  alpha_pattern={}, init_lora_weights=True, inference_mode=True)
    return config


def lora_delta(tensors: Mapping[str, torch.Tensor], name: str, scaling: float) -> torch.Tensor:
    """dW = scaling * B @ A of one module, in fp32."""
    return scaling * tensors[name + LORA_B].float() @ tensors[name + LORA_A].float()
