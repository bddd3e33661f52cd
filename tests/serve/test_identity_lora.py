"""The all-zero adapter that stands in for the base model on the LoRA path (serve/identity_lora.py)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.numpy import load_file

from serve.engine import EngineSpec
from serve.identity_lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, write_identity_adapter


def test_zero_adapter_has_every_module_of_its_template_at_rank_one(tiny_adapters: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    template = tiny_adapters["empathy-sensibility"]
    folder = write_identity_adapter(template, tmp_path)
    zero, original = load_file(str(folder / ADAPTER_WEIGHTS)), load_file(str(template / ADAPTER_WEIGHTS))
    assert zero.keys() == original.keys()
    for key, tensor in zero.items():
        assert not tensor.any(), key
        side = -1 if ".lora_A." in key else 0
        assert tensor.shape[side] == original[key].shape[side] and 1 in tensor.shape, key
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert (config["r"], config["lora_alpha"]) == (1, 1)
    assert "rank_pattern" not in config and "alpha_pattern" not in config
    assert write_identity_adapter(template, tmp_path) == folder  # written once, then reused
    assert len(list(tmp_path.iterdir())) == 1


def test_engine_command_serves_base_through_the_zero_adapter(tiny_adapters: dict[str, Path],
                                                            tiny_model_dir: Path, tmp_path: Path) -> None:
    modules = {name: str(path) for name, path in tiny_adapters.items()}
    spec = EngineSpec(model=str(tiny_model_dir), lora_modules=modules).with_identity_lora(tmp_path)
    cmd = spec.command()
    assert cmd[cmd.index("--served-model-name") + 1] == "base-no-lora"
    lora_args = cmd[cmd.index("--lora-modules") + 1:cmd.index("--lora-target-modules")]
    assert lora_args[0] == f"base={spec.identity_lora}" and len(lora_args) == len(modules) + 1
    plain = EngineSpec(model=str(tiny_model_dir))  # no LoRA: nothing to work around, base is the model
    assert plain.with_identity_lora(tmp_path).command()[plain.command().index("--served-model-name") + 1] \
        == "base"
    off = EngineSpec(model=str(tiny_model_dir), lora_modules=modules, base_as_lora=False)
    assert off.with_identity_lora(tmp_path).raw_name == "base"
