"""LoRA SFT of one expert with TRL's `SFTTrainer` + PEFT, resumable, published atomically.

Layout while training: `<out>.work/` (a hidden sibling of the final folder) holds `checkpoints/`, the
`job.json` the checkpoints belong to, and the finished adapter before it is renamed to `<out>`; so a
half-written expert never appears under its served name and an interrupted run continues from its last
checkpoint when started again with the same job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empathy.errors import ModelError
from training.sft_data import file_sha256, read_subset, subset_fingerprint, take, to_prompt_completion

if TYPE_CHECKING:
    from transformers import TrainerCallback
    from trl import SFTTrainer

log = logging.getLogger("empathy.experts")

META_FILE = "empathy_meta.json"


@dataclass(frozen=True)
class ExpertJob:
    """Everything that decides an expert's weights (plus where it goes)."""

    subset: str
    subset_file: Path
    out_dir: Path
    base_model: str  # a resolved folder or a hub id
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                     "down_proj")
    learning_rate: float = 1e-4
    epochs: float = 1.0
    max_length: int = 512
    batch_size: int = 8
    grad_accum: int = 1
    seed: int = 42
    save_steps: int = 50
    limit: int | None = None
    max_steps: int | None = None
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    bf16: bool = True  # autocast matmuls to bf16 (AMX on recent x86 CPUs; tensor cores on GPUs)
    padding_free: bool = False  # concatenate a batch into one row (no pad tokens), sequences kept apart
    lora_layers: int | None = None  # LoRA on the last N decoder layers only (None: every layer)
    reply_head: bool = True  # LM head on reply positions only, fp32 (training/sft_loss.py); False: TRL's
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def settings(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("subset_file", "out_dir", "extra"):
            data.pop(key)
        data["lora_targets"] = list(self.lora_targets)
        return data

    def fingerprint(self, subset_sha256: str) -> str:
        payload = json.dumps({**self.settings(), "subset_sha256": subset_sha256}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def work_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.work")


def check_base_model(base_model: str) -> None:
    """ModelError before any work when a base model folder is missing or incomplete."""
    path = Path(base_model)
    looks_local = path.is_absolute() or base_model.startswith(".") or path.exists()
    if looks_local and not (path / "config.json").is_file():
        raise ModelError(f"base model folder {path} is missing or has no config.json; run "
                         "`empathy train base-model` or set EMPATHY_BASE_MODEL to a model folder.")


def prepare_work_dir(job: ExpertJob, fingerprint: str) -> Path:
    """The job's work folder; checkpoints of a different job are discarded (they would not resume it)."""
    work = work_dir(job.out_dir)
    marker = work / "job.json"
    if work.exists():
        old = json.loads(marker.read_text()).get("fingerprint") if marker.is_file() else None
        if old != fingerprint:
            log.warning("discarding checkpoints in %s: they belong to another job (settings or data changed)",
                        work)
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "settings": job.settings()}, indent=2))
    return work


def count_steps(n_rows: int, job: ExpertJob) -> int:
    if job.max_steps:
        return job.max_steps
    return max(1, math.ceil(math.ceil(n_rows / job.batch_size) / job.grad_accum * job.epochs))


def lora_layer_indices(base_model: str, last: int | None) -> list[int] | None:
    """Indices of the last `last` decoder layers (None: all): the backward pass stops below them."""
    if last is None:
        return None
    from transformers import AutoConfig

    total = int(AutoConfig.from_pretrained(base_model).num_hidden_layers)
    return list(range(max(total - last, 0), total))


def build_trainer(job: ExpertJob, rows: list[dict[str, Any]], checkpoints: Path,
                  callbacks: Sequence[TrainerCallback] = ()) -> SFTTrainer:
    """TRL's SFT trainer over prompt/completion rows: loss on the completion (the reply) only."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from training.sft_loss import ReplyLossSFTTrainer

    steps = count_steps(len(rows), job)
    args = SFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=job.batch_size, gradient_accumulation_steps=job.grad_accum,
        learning_rate=job.learning_rate, num_train_epochs=job.epochs, max_steps=job.max_steps or -1,
        # Padding-free batches are not truncated by TRL: rows are cut to max_length before (`sft_rows`).
        max_length=None if job.padding_free else job.max_length, completion_only_loss=True, packing=False,
        seed=job.seed, data_seed=job.seed,
        # TRL turns checkpointing on by default (a third more compute); a small model on CPU has memory
        # to spare. Batches of similar lengths carry less padding (see bench/train_throughput.py).
        gradient_checkpointing=job.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if job.group_by_length else "random",
        save_strategy="steps", save_steps=job.save_steps, save_total_limit=2,
        logging_steps=max(1, min(10, steps // 10)), include_num_input_tokens_seen="non_padding",
        # CPU: full precision, no worker processes, no external trackers.
        padding_free=job.padding_free, bf16=job.bf16, fp16=False,
        use_cpu=True, dataloader_num_workers=0, report_to="none", disable_tqdm=False,
    )
    peft_config = LoraConfig(
        r=job.lora_r, lora_alpha=job.lora_alpha, lora_dropout=job.lora_dropout,
        target_modules=list(job.lora_targets), bias="none", task_type="CAUSAL_LM",
        layers_to_transform=lora_layer_indices(job.base_model, job.lora_layers),
    )
    dataset = Dataset.from_list([to_prompt_completion(row) for row in rows])
    trainer_class = ReplyLossSFTTrainer if job.reply_head else SFTTrainer
    return trainer_class(
        model=job.base_model, args=args, train_dataset=dataset, peft_config=peft_config,
        processing_class=AutoTokenizer.from_pretrained(job.base_model), callbacks=list(callbacks),
    )


def last_checkpoint(checkpoints: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None


def train_expert(job: ExpertJob, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Train (or resume) the expert and publish it to `job.out_dir`; returns its metadata."""
    rows = read_subset(job.subset_file)
    check_base_model(job.base_model)
    started = time.monotonic()
    picked = take(rows, job.limit, job.seed)
    data = subset_fingerprint(job.subset_file)
    fingerprint = job.fingerprint(str(data["subset_sha256"]))
    work = prepare_work_dir(job, fingerprint)
    trainer = build_trainer(job, picked, work / "checkpoints", callbacks)
    resume = last_checkpoint(work / "checkpoints")
    if resume:
        log.info("resuming %s expert from %s", job.subset, resume)
    result = trainer.train(resume_from_checkpoint=resume)
    meta = {
        "subset": job.subset, "base_model": job.base_model, **data, "settings": job.settings(),
        "fingerprint": fingerprint,
        "samples": len(picked), "steps": trainer.state.global_step,
        "final_loss": final_loss(trainer.state.log_history, result.training_loss),
        "train_loss_mean": result.training_loss,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "train_runtime_s": result.metrics.get("train_runtime"),
        "wall_time_s": round(time.monotonic() - started, 2), "resumed_from": resume,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **job.extra,
    }
    publish(trainer, work, job.out_dir, meta)
    return meta


def is_up_to_date(job: ExpertJob) -> bool:
    """True when `job.out_dir` holds an expert trained by this very job on the current subset file."""
    meta_path = job.out_dir / META_FILE
    if not meta_path.is_file() or not job.subset_file.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    return meta.get("fingerprint") == job.fingerprint(file_sha256(job.subset_file))


def final_loss(history: list[dict[str, Any]], fallback: float) -> float:
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return float(losses[-1]) if losses else float(fallback)


def publish(trainer: SFTTrainer, work: Path, out_dir: Path, meta: dict[str, Any]) -> None:
    """Save the adapter next to the final folder, check it is a plain LoRA, then swap it in by renames."""
    staged = work / "adapter"
    if staged.exists():
        shutil.rmtree(staged)
    model: Any = trainer.model  # the PEFT model
    model.save_pretrained(staged)
    check_plain_lora(staged)
    (staged / META_FILE).write_text(json.dumps(meta, indent=2))
    previous = work / "previous"
    if out_dir.exists():
        out_dir.rename(previous)
    staged.rename(out_dir)
    shutil.rmtree(work)  # checkpoints are only a resume point; the expert is complete now


def check_plain_lora(folder: Path) -> None:
    """vLLM serves LoRA A/B only: refuse adapters that carry full modules or extra token rows."""
    config = json.loads((folder / "adapter_config.json").read_text())
    keys = ("modules_to_save", "trainable_token_indices")
    extras = {key: config[key] for key in keys if config.get(key)}
    if extras:
        raise ModelError(f"adapter in {folder} is not a plain LoRA ({extras}); vLLM cannot serve it. "
                         "Train without modules_to_save (and without adding tokens to the tokenizer).")
