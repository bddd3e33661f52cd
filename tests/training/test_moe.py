"""The token-level MoE in transformers (the reference the vLLM model is held to) and its gate training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from empathy.moe.lora_pack import (
    ExpertLoRA,
    ExpertSpec,
    expert_mask,
    forced_gate_bias,
    pack,
    routed_delta,
)
from tests.tiny import make_random_lora

IDS = [1, 20, 300, 4000, 55, 66, 77, 88, 99, 1000, 7, 8]


@pytest.fixture(scope="module")
def random_experts(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> list[tuple[str, Path]]:
    """Two random LoRAs on every projection, different ranks and scalings."""
    root = tmp_path_factory.mktemp("moe-experts")
    sens = make_random_lora(tiny_model_dir, root / "sensibility", seed=1, rank=8)
    rat = make_random_lora(tiny_model_dir, root / "rationality", seed=2, rank=4)
    config = json.loads((rat / "adapter_config.json").read_text())
    config["lora_alpha"] = 7
    (rat / "adapter_config.json").write_text(json.dumps(config))
    return [("sensibility", sens), ("rationality", rat)]


def forced_gates(n_layers: int, hidden: int, expert: int, kinds: tuple[str, ...]) -> dict[str, torch.Tensor]:
    gates = {}
    for layer in range(n_layers):
        for kind in kinds:
            gates[f"{layer}.{kind}.weight"] = torch.zeros(2, hidden)
            gates[f"{layer}.{kind}.bias"] = forced_gate_bias(2, expert)
    return gates


def forced_gates_at(layers: list[int], hidden: int, expert: int) -> dict[str, torch.Tensor]:
    return {k: v for k, v in forced_gates(max(layers) + 1, hidden, expert, ("mlp", "attn")).items()
            if int(k.split(".")[0]) in layers}


def logits_of(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([IDS])).logits[0].float()


def test_packed_delta_is_the_gated_sum_of_expert_deltas() -> None:
    torch.manual_seed(0)
    a1, b1, a2, b2 = torch.randn(3, 16), torch.randn(10, 3), torch.randn(2, 16), torch.randn(10, 2)
    experts = [ExpertLoRA("s", 2.0, {(0, "up_proj"): (a1, b1)}),
               ExpertLoRA("r", 0.5, {(0, "up_proj"): (a2, b2)})]
    a, b = pack(experts, 0, ["up_proj"], [10])
    mask = expert_mask([ExpertSpec(3, ("up_proj",), (0,)), ExpertSpec(2, ("up_proj",), (0,))], ["up_proj"], 0)
    x, g = torch.randn(5, 16), torch.softmax(torch.randn(5, 2), -1)
    want = g[:, :1] * (x @ (2.0 * b1 @ a1).t()) + g[:, 1:] * (x @ (0.5 * b2 @ a2).t())
    assert torch.allclose(routed_delta(x, g, a, b, mask), want, atol=1e-5)


def test_packed_projection_puts_each_module_in_its_output_slice() -> None:
    torch.manual_seed(1)
    gate = (torch.randn(3, 8), torch.randn(6, 3))
    up = (torch.randn(3, 8), torch.randn(6, 3))
    expert = ExpertLoRA("s", 1.0, {(0, "gate_proj"): gate, (0, "up_proj"): up})
    a, b = pack([expert], 0, ["gate_proj", "up_proj"], [6, 6])
    mask = expert_mask([ExpertSpec(3, ("gate_proj", "up_proj"), (0,))], ["gate_proj", "up_proj"], 0)
    x = torch.randn(4, 8)
    out = routed_delta(x, torch.ones(4, 1), a, b, mask)
    assert torch.allclose(out[:, :6], x @ (gate[1] @ gate[0]).t(), atol=1e-5)
    assert torch.allclose(out[:, 6:], x @ (up[1] @ up[0]).t(), atol=1e-5)


@pytest.mark.parametrize("expert", [0, 1])
def test_gates_forced_to_one_expert_equal_that_expert(random_experts: list[tuple[str, Path]],
                                                      tiny_model_dir: Path, tmp_path: Path,
                                                      expert: int) -> None:
    """Attention routed too (`all`): with the gates on one expert the MoE is exactly that PEFT expert."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.moe.reference import load_reference
    from training.moe.train import compose

    art = compose(str(tiny_model_dir), random_experts, tmp_path / "moe", "all",
                  forced_gates(2, 128, expert, ("mlp", "attn")))
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                     random_experts[expert][1]).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    moe, want = logits_of(load_reference(art)), logits_of(peft)
    assert float((moe - want).abs().max()) < 1e-4
    assert float((logits_of(base) - want).abs().max()) > 0.1  # the expert changes the logits visibly


def test_experts_on_the_last_layers_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Experts trained on the last N layers (EMPATHY_LORA_LAYERS): gates only where they adapt, and with the
    gates forced onto one expert the MoE is that expert."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from training.moe.reference import load_reference
    from training.moe.train import compose

    experts = []
    for name, seed in (("sensibility", 3), ("rationality", 4)):
        torch.manual_seed(seed)
        config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, layers_to_transform=[1],
                            target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"])
        get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config).save_pretrained(
            tmp_path / name)
        experts.append((name, tmp_path / name))
    art = compose(str(tiny_model_dir), experts, tmp_path / "moe", "all", forced_gates_at([1], 128, 1))
    assert {k for k in load_file(str(art / "moe.safetensors")) if k.startswith("gates.")} == {
        f"gates.1.{kind}.{part}" for kind in ("mlp", "attn") for part in ("weight", "bias")}
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), experts[1][1])
    assert float((logits_of(load_reference(art)) - logits_of(peft.eval())).abs().max()) < 1e-4


def test_untrained_moe_is_the_half_blend(tiny_artifacts: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Zero gates give each expert 0.5 at the MLP and attention takes the mean delta: blend 0.5 exactly."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.moe.reference import load_reference
    from training.moe.train import compose

    experts = [(s, tiny_artifacts / "experts" / s) for s in ("sensibility", "rationality")]
    art = compose(str(tiny_model_dir), experts, tmp_path / "moe")
    index = json.loads((tiny_artifacts / "blends" / "index.json").read_text())
    half = next(Path(b["path"]) for b in index["blends"] if b["weight"] == 0.5)
    blend = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), half).eval()
    config = json.loads((art / "config.json").read_text())
    assert config["architectures"] == ["EmpathyMoeForCausalLM"]
    assert config["empathy_moe"]["routed"] == ["gate_proj", "up_proj", "down_proj"]
    copied = {p.name for p in art.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= copied
    assert not {"model.safetensors"} & copied  # the base weights stay in the base model's folder
    assert float((logits_of(load_reference(art)) - logits_of(blend)).abs().max()) < 1e-4


def _job(tiny_artifacts: Path, tiny_model_dir: Path, out: Path, **kwargs: object) -> object:
    from training.moe.train import MoeJob

    return MoeJob(base_model=str(tiny_model_dir),
                  experts=tuple((s, tiny_artifacts / "experts" / s) for s in ("sensibility", "rationality")),
                  data_file=tiny_artifacts / "subsets" / "sensibility.jsonl", out_dir=out, batch_size=2,
                  max_length=128, learning_rate=0.05, **kwargs)


def test_gate_training_moves_only_the_gates_and_publishes(tiny_artifacts: Path, tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from empathy.moe.artifact import META_FILE, WEIGHTS_FILE
    from training.moe.train import is_up_to_date, train_moe

    job = _job(tiny_artifacts, tiny_model_dir, tmp_path / "moe", max_steps=3)
    meta = train_moe(job, progress=False)
    assert meta["steps"] == 3 and meta["samples"] == 6 and meta["resumed_from_step"] == 0
    tensors = load_file(str(job.out_dir / WEIGHTS_FILE))
    gates = {k: v for k, v in tensors.items() if k.startswith("gates.")}
    assert sorted(gates) == [f"gates.{i}.mlp.{p}" for i in range(2) for p in ("bias", "weight")]
    assert all(float(v.abs().max()) > 0 for v in gates.values())  # trained away from zero
    assert json.loads((job.out_dir / META_FILE).read_text())["fingerprint"] == job.fingerprint()
    assert is_up_to_date(job) and not (tmp_path / ".moe.work").exists()


def test_gate_training_resumes_from_its_checkpoint(tiny_artifacts: Path, tiny_model_dir: Path,
                                                   tmp_path: Path) -> None:
    """A checkpoint of this job at step 2 (as an interrupted run leaves it) is continued, not redone; one of
    another job is discarded."""
    from empathy.moe.lora_pack import MLP
    from training.moe.reference import build_reference
    from training.moe.train import _save, load_experts, train_moe

    job = _job(tiny_artifacts, tiny_model_dir, tmp_path / "moe", max_steps=3)
    moe = build_reference(job.base_model, load_experts(job, 2), MLP)
    optimizer = torch.optim.AdamW(moe.gates.parameters(), lr=job.learning_rate)
    work = tmp_path / ".moe.work"
    work.mkdir()
    _save(work, job.fingerprint(), 2, moe, optimizer)
    assert train_moe(job, progress=False)["resumed_from_step"] == 2
    work.mkdir()
    _save(work, "another-job", 2, moe, optimizer)
    assert train_moe(job, progress=False)["resumed_from_step"] == 0


def test_cli_trains_and_skips_when_up_to_date(tiny_artifacts: Path, tiny_model_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from training.commands import moe

    argv = ["--data-dir", str(tiny_artifacts), "--base-model", str(tiny_model_dir), "--data-file",
            str(tiny_artifacts / "subsets" / "rationality.jsonl"), "--limit", "4", "--max-steps", "1",
            "--out", str(tmp_path / "moe")]
    assert moe.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 1
    assert moe.main(argv) == 0
    assert "up to date" in capsys.readouterr().out


def test_gate_probe_of_untrained_gates_is_one_half(tiny_artifacts: Path, tiny_model_dir: Path,
                                                   tmp_path: Path) -> None:
    from training.moe.evaluate import gate_plot, gate_probe, gate_table
    from training.moe.train import compose

    experts = [(s, tiny_artifacts / "experts" / s) for s in ("sensibility", "rationality")]
    probe = gate_probe(compose(str(tiny_model_dir), experts, tmp_path / "moe"))
    assert probe["feeling"] == [0.5, 0.5] and probe["practical"] == [0.5, 0.5]
    assert probe["n"] == {"feeling": 24, "practical": 24} and probe["ci95"][0] == [0.0, 0.0]
    assert "| 1 | 0.5000 | 0.5000 | +0.0000 [+0.0000, +0.0000] |" in gate_table(probe)
    assert gate_plot(probe, tmp_path / "gates.png").stat().st_size > 1000
