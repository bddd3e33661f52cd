"""Exact blends: the concatenated-rank adapter's delta equals a*dW_sens + (1-a)*dW_rat for every module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from empathy.errors import ConfigError, ModelError
from tests.tiny import make_random_lora
from training.blend_files import build_blends, load_expert
from training.blends import lora_delta, module_names, parse_grid, validate_grid

WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0, 0.3]


@pytest.fixture(scope="module")
def random_experts(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    """Two random (non-zero) LoRAs with different ranks and scalings, so no scaling cancels out."""
    root = tmp_path_factory.mktemp("random-experts")
    sens = make_random_lora(tiny_model_dir, root / "sensibility", seed=1, rank=8)
    rat = make_random_lora(tiny_model_dir, root / "rationality", seed=2, rank=4)
    config = json.loads((rat / "adapter_config.json").read_text())
    config["lora_alpha"] = 7  # scaling 7/4 against the sensibility expert's 32/8
    (rat / "adapter_config.json").write_text(json.dumps(config))
    return sens, rat


def test_blend_delta_is_exact_for_every_module(random_experts: tuple[Path, Path], tmp_path: Path) -> None:
    sens_dir, rat_dir = random_experts
    index = build_blends(sens_dir, rat_dir, tmp_path / "blends", WEIGHTS)
    sens, rat = load_expert(sens_dir, "sensibility"), load_expert(rat_dir, "rationality")
    assert index["rank"] == 12 and sens.scaling == 4.0 and rat.scaling == 1.75
    for entry in index["blends"]:
        folder, weight = Path(entry["path"]), entry["weight"]
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["r"] == 12 and config["lora_alpha"] == 12 and not config["use_rslora"]
        blend = load_file(str(folder / "adapter_model.safetensors"))
        names = module_names(blend)
        assert names == module_names(sens.tensors) and len(names) == 2 * 7  # 2 layers x 7 projections
        for name in names:
            expected = weight * lora_delta(sens.tensors, name, sens.scaling) + (1 - weight) * lora_delta(
                rat.tensors, name, rat.scaling)
            error = (lora_delta(blend, name, config["lora_alpha"] / config["r"]) - expected).abs().max()
            assert float(error) < 1e-5, (name, weight, float(error))


def test_peft_loads_a_blend_with_the_exact_delta(random_experts: tuple[Path, Path], tmp_path: Path,
                                                 tiny_model_dir: Path) -> None:
    """PEFT reads our config the way we mean it: its own delta of the blend equals the expected sum."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sens_dir, rat_dir = random_experts
    index = build_blends(sens_dir, rat_dir, tmp_path / "blends", [0.75])
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                      index["blends"][0]["path"])
    sens, rat = load_expert(sens_dir, "sensibility"), load_expert(rat_dir, "rationality")
    name = "base_model.model.model.layers.1.mlp.down_proj"
    layer = model.get_submodule(name)
    expected = 0.75 * lora_delta(sens.tensors, name, sens.scaling) + 0.25 * lora_delta(
        rat.tensors, name, rat.scaling)
    with torch.no_grad():
        assert float((layer.get_delta_weight("default") - expected).abs().max()) < 1e-5


def test_names_carry_weight_and_experts_hash(random_experts: tuple[Path, Path], tmp_path: Path) -> None:
    index = build_blends(*random_experts, tmp_path / "blends", [0.75, 0, 1])
    names = [entry["name"] for entry in index["blends"]]
    assert names == [f"blend-{w}-{index['experts_hash'][:8]}" for w in ("0", "0.75", "1")]
    on_disk = json.loads((tmp_path / "blends" / "index.json").read_text())
    assert on_disk["blends"] == index["blends"] and on_disk["grid"] == [0.0, 0.75, 1.0]


def test_grid_outside_unit_interval_is_refused() -> None:
    for bad in ("0,1.5", "-0.1", "nan", "0,x"):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)
    with pytest.raises(ConfigError):
        validate_grid([])
    assert parse_grid("1, 0.5,0,0.5") == [0.0, 0.5, 1.0]


def test_cli_refuses_a_bad_grid_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from empathy.cli import main

    code = main(["train", "blends", "--grid", "0,2", "--data-dir", str(tmp_path)])
    assert code != 0 and "[0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "blends").exists()


def _copy_with(src: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "adapter_config.json").read_text())
    config.update(changes)
    (dst / "adapter_config.json").write_text(json.dumps(config))
    return dst


def test_lora_of_another_base_model_is_refused(random_experts: tuple[Path, Path], tmp_path: Path,
                                               default_model_dir: Path) -> None:
    sens, rat = random_experts
    other = _copy_with(rat, tmp_path / "other", base_model_name_or_path=str(default_model_dir))
    with pytest.raises(ModelError, match="different base models"):
        build_blends(sens, other, tmp_path / "blends", [0.5])
    with pytest.raises(ModelError, match="base model is"):
        build_blends(sens, rat, tmp_path / "blends", [0.5], base_model=str(default_model_dir))
    assert not (tmp_path / "blends").exists()


def test_lora_with_other_shapes_is_refused(random_experts: tuple[Path, Path], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sens, rat = random_experts
    other = _copy_with(rat, tmp_path / "other")
    tensors = load_file(str(other / "adapter_model.safetensors"))
    key = next(k for k in tensors if k.endswith("q_proj.lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], 64)  # as if the base had another hidden size
    save_file(tensors, str(other / "adapter_model.safetensors"))
    with pytest.raises(ModelError, match="different base models"):
        build_blends(sens, other, tmp_path / "blends", [0.5])


def test_experts_with_different_target_modules_are_refused(random_experts: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    sens, rat = random_experts
    other = _copy_with(rat, tmp_path / "other", target_modules=["q_proj", "v_proj"])
    with pytest.raises(ModelError, match="different target modules"):
        build_blends(sens, other, tmp_path / "blends", [0.5])


def test_missing_expert_names_the_command(random_experts: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="empathy train expert --subset rationality"):
        build_blends(random_experts[0], tmp_path / "nothing", tmp_path / "blends", [0.5])


@pytest.mark.slow
def test_cli_builds_blends_from_trained_experts(tiny_artifacts: Path, tiny_model_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from empathy.cli import main

    shutil.copytree(tiny_artifacts / "experts", tmp_path / "experts")
    argv = ["train", "blends", "--grid", "0,0.5,1", "--data-dir", str(tmp_path),
            "--base-model", str(tiny_model_dir)]
    assert main(argv) == 0
    index = json.loads((tmp_path / "blends" / "index.json").read_text())
    assert index["rank"] == 16 and [b["weight"] for b in index["blends"]] == [0.0, 0.5, 1.0]
    printed = capsys.readouterr().out
    assert all(Path(b["path"]).is_dir() and b["name"] in printed for b in index["blends"])
    session = json.loads((tiny_artifacts / "blends" / "index.json").read_text())
    assert index["experts_hash"] == session["experts_hash"], "same experts, same names"
