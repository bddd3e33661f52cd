"""The `empathy-moe` artifact: one folder that vLLM loads as a model (and the transformers reference too).

    <data_dir>/moe/
      config.json        the base model's config with architectures = ["EmpathyMoeForCausalLM"] and an
                         `empathy_moe` section: base model folder, experts (name, rank, scaling, targets),
                         routed modules, gate layout
      moe.safetensors    gates.<layer>.{mlp,attn}.{weight,bias} and experts.<i>.layers.<l>.<module>.lora_{A,B}
                         (copies of the experts' LoRA tensors: a few MB; the base weights stay in the base
                         model's folder and are read from there)
      tokenizer files    copied from the base model (vLLM tokenizes with them)
      empathy_moe.json   training metadata (samples, steps, loss, fingerprint, mean gates)

It is written to a hidden sibling and renamed into place, so a half-written artifact is never served.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from empathy.errors import ModelError
from empathy.moe.lora_pack import ATTENTION, MLP, ExpertLoRA, ExpertSpec, checked_expert

ARCHITECTURE = "EmpathyMoeForCausalLM"
CONFIG_KEY = "empathy_moe"
WEIGHTS_FILE = "moe.safetensors"
META_FILE = "empathy_moe.json"
FORMAT_VERSION = 2  # 2: a layer list per expert
ROUTED_CHOICES = {"mlp": MLP, "all": ATTENTION + MLP}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json")  # not copied from the base


def moe_section(base_model: str, experts: Sequence[ExpertLoRA], routed: Sequence[str]) -> dict[str, Any]:
    targets = sorted({t for e in experts for t in e.targets})
    return {
        "format_version": FORMAT_VERSION,
        "base_model": str(Path(base_model).resolve()),
        "experts": [{"name": e.name, "rank": e.rank, "scaling": e.scaling, "targets": e.targets,
                     "layers": e.layers} for e in experts],
        "routed": [m for m in routed if m in targets],
        "averaged": [m for m in targets if m not in routed],
        "gate_attention": any(m in ATTENTION for m in routed if m in targets),
    }


def specs(section: Mapping[str, Any]) -> list[ExpertSpec]:
    return [ExpertSpec(int(e["rank"]), tuple(e["targets"]), tuple(e["layers"])) for e in section["experts"]]


def expert_tensors(experts: Sequence[ExpertLoRA]) -> dict[str, torch.Tensor]:
    out = {}
    for i, expert in enumerate(experts):
        for (layer, module), (a, b) in expert.modules.items():
            out[f"experts.{i}.layers.{layer}.{module}.lora_A"] = a.contiguous()
            out[f"experts.{i}.layers.{layer}.{module}.lora_B"] = b.contiguous()
    return out


def experts_from(tensors: Mapping[str, torch.Tensor], section: Mapping[str, Any], n_layers: int
                 ) -> list[ExpertLoRA]:
    """The experts stored in an artifact's tensors (names as `expert_tensors` writes them)."""
    experts = []
    for i, info in enumerate(section["experts"]):
        modules = {}
        for layer in info["layers"]:
            for module in info["targets"]:
                key = f"experts.{i}.layers.{layer}.{module}"
                if f"{key}.lora_A" not in tensors:
                    raise ModelError(f"the MoE artifact lacks {key}.lora_A; rebuild it with "
                                     "`empathy train moe`.")
                modules[(layer, module)] = (tensors[f"{key}.lora_A"], tensors[f"{key}.lora_B"])
        experts.append(checked_expert(info["name"], float(info["scaling"]), modules, n_layers))
    return experts


def resolve_base(folder: Path, section: Mapping[str, Any]) -> Path:
    base = Path(section["base_model"])
    base = base if base.is_absolute() else (folder / base).resolve()
    if not (base / "config.json").is_file():
        raise ModelError(f"the MoE artifact in {folder} refers to base model {base}, which is missing; "
                         "prepare it (`empathy train base-model`) or rebuild the artifact "
                         "(`empathy train moe`).")
    return base


def copy_tokenizer(base: Path, out: Path) -> None:
    for path in base.iterdir():
        if path.is_file() and path.name != "config.json" and not path.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(path, out / path.name)


def write_artifact(out: Path, base_model: str, experts: Sequence[ExpertLoRA], routed: Sequence[str],
                   gates: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write the folder next to `out` and rename it into place (the previous one is replaced)."""
    from safetensors.torch import save_file

    base = Path(base_model)
    staged = out.with_name(f".{out.name}.staged")
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    config = json.loads((base / "config.json").read_text())
    config["architectures"] = [ARCHITECTURE]
    config[CONFIG_KEY] = moe_section(base_model, experts, routed)
    (staged / "config.json").write_text(json.dumps(config, indent=2))
    tensors = {f"gates.{k}": v.detach().float().contiguous() for k, v in gates.items()}
    save_file({**tensors, **expert_tensors(experts)}, str(staged / WEIGHTS_FILE))
    copy_tokenizer(base, staged)
    (staged / META_FILE).write_text(json.dumps(dict(meta), indent=2))
    if out.exists():
        shutil.rmtree(out)
    staged.rename(out)
    return out


def read_artifact(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config.json, tensors of moe.safetensors); ModelError with the fix when it is not an MoE artifact."""
    from safetensors.torch import load_file

    config_path = folder / "config.json"
    if not config_path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ModelError(f"{folder} is not an MoE artifact (needs config.json and {WEIGHTS_FILE}); run "
                         "`empathy train moe`.")
    config = json.loads(config_path.read_text())
    section = config.get(CONFIG_KEY)
    if not isinstance(section, dict) or section.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{config_path} has no `{CONFIG_KEY}` section of format {FORMAT_VERSION}; rebuild "
                         "it with `empathy train moe`.")
    return config, load_file(str(folder / WEIGHTS_FILE))


def is_artifact(folder: Path) -> bool:
    try:
        read_config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return ARCHITECTURE in (read_config.get("architectures") or []) and (folder / WEIGHTS_FILE).is_file()
