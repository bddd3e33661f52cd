"""Expert training on the tiny random Llama: loss mask on the reply only, plain PEFT folder, meta, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from transformers import AutoTokenizer, TrainerCallback

from empathy.errors import DataError, ModelError
from tests.tiny import write_tiny_subsets
from training.experts import META_FILE, ExpertJob, build_trainer, is_up_to_date, train_expert, work_dir
from training.sft_data import read_subset, take


def _job(data_dir: Path, base: Path, **changes: object) -> ExpertJob:
    fields: dict[str, object] = dict(
        subset="sensibility", subset_file=data_dir / "subsets" / "sensibility.jsonl",
        out_dir=data_dir / "experts" / "sensibility", base_model=str(base), max_steps=2, batch_size=2,
        max_length=128, save_steps=1,
    )
    fields.update(changes)
    return ExpertJob(**fields)  # type: ignore[arg-type]


@pytest.mark.slow
def test_loss_mask_covers_only_the_reply(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_tiny_subsets(tmp_path)
    job = _job(tmp_path, tiny_model_dir)
    rows = read_subset(job.subset_file)
    trainer = build_trainer(job, rows, tmp_path / "checkpoints")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for row, example in zip(rows, trainer.train_dataset, strict=True):
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]
        ids, labels = example["input_ids"], example["labels"]
        assert ids[: len(prompt)] == prompt, "the training sequence starts with the rendered prompt"
        assert all(label == -100 for label in labels[: len(prompt)])
        assert labels[len(prompt):] == ids[len(prompt):]
        reply = tokenizer.decode(ids[len(prompt):])
        assert reply.startswith(row["messages"][-1]["content"]) and "<|im_end|>" in reply


@pytest.mark.slow
def test_session_experts_are_plain_peft_folders_with_meta(tiny_artifacts: Path, tiny_model_dir: Path) -> None:
    for subset in ("sensibility", "rationality"):
        folder = tiny_artifacts / "experts" / subset
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["r"] == 8 and config["lora_alpha"] == 32 and config["lora_dropout"] == 0.1
        assert not config["modules_to_save"] and not config.get("trainable_token_indices")
        assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                 "up_proj", "down_proj"}
        meta = json.loads((folder / META_FILE).read_text())
        assert meta["base_model"] == str(tiny_model_dir.resolve()) and meta["subset"] == subset
        assert meta["steps"] == 3 and meta["tokens_seen"] > 0 and meta["final_loss"] > 0
        assert meta["subset_sha256"] and meta["wall_time_s"] > 0 and meta["settings"]["lora_r"] == 8
        assert not work_dir(folder).exists(), "checkpoints are removed once the expert is published"


class StopAt(TrainerCallback):
    """Interrupts training like a Ctrl-C after a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step >= self.step:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_tiny_subsets(tmp_path)
    job = _job(tmp_path, tiny_model_dir, max_steps=3)
    with pytest.raises(KeyboardInterrupt):
        train_expert(job, callbacks=[StopAt(2)])
    assert not job.out_dir.exists(), "no half-written expert under the final name"
    saved = sorted(p.name for p in (work_dir(job.out_dir) / "checkpoints").glob("checkpoint-*"))
    assert saved == ["checkpoint-1"]
    meta = train_expert(job)
    assert meta["resumed_from"].endswith("checkpoint-1") and meta["steps"] == 3
    assert (job.out_dir / "adapter_model.safetensors").is_file()
    assert is_up_to_date(job) and not is_up_to_date(replace(job, learning_rate=2e-4))


def test_limit_takes_the_first_n_of_a_seeded_shuffle() -> None:
    rows = [{"id": str(i)} for i in range(20)]
    first = take(rows, 5, seed=3)
    assert first == take(rows, 5, seed=3) and len(first) == 5 and first != rows[:5]
    assert take(rows, 8, seed=3)[:5] == first  # a bigger limit extends the same order


def test_missing_subset_says_to_run_select_split(tmp_path: Path, tiny_model_dir: Path) -> None:
    job = _job(tmp_path, tiny_model_dir)
    with pytest.raises(DataError, match="empathy select split"):
        train_expert(job)
    assert not work_dir(job.out_dir).exists()


def test_empty_subset_is_refused_before_any_work(tmp_path: Path, tiny_model_dir: Path) -> None:
    job = _job(tmp_path, tiny_model_dir)
    job.subset_file.parent.mkdir(parents=True)
    job.subset_file.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        train_expert(job)
    assert not work_dir(job.out_dir).exists()


def test_malformed_row_names_file_and_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    job = _job(tmp_path, tiny_model_dir)
    job.subset_file.parent.mkdir(parents=True)
    job.subset_file.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                               '{"role": "assistant", "content": "hello"}]}\n{"messages": []}\n')
    with pytest.raises(DataError, match=r"sensibility\.jsonl:2"):
        train_expert(job)


def test_missing_base_model_is_refused_before_any_work(tmp_path: Path) -> None:
    write_tiny_subsets(tmp_path)
    job = _job(tmp_path, tmp_path / "no-such-model")
    with pytest.raises(ModelError, match="empathy train base-model"):
        train_expert(job)
    assert not work_dir(job.out_dir).exists()


def test_cli_reports_a_missing_default_base_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from empathy.cli import main

    write_tiny_subsets(tmp_path)
    code = main(["train", "expert", "--subset", "sensibility", "--data-dir", str(tmp_path)])
    assert code != 0 and "empathy train base-model" in capsys.readouterr().err
