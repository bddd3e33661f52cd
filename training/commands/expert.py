"""`empathy train expert`: LoRA SFT of one expert on a subset (resumable from its last checkpoint)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

SUBSET_CHOICES = ("sensibility", "rationality", "full")

if TYPE_CHECKING:
    from empathy.settings import Settings
    from training.experts import ExpertJob


def job_from_settings(settings: Settings, subset: str, subset_file: Path, out_dir: Path,
                      limit: int | None = None, max_steps: int | None = None) -> ExpertJob:
    """The expert job that the settings describe (the one place settings become training options)."""
    from empathy.base_model import base_model_path
    from training.experts import ExpertJob

    return ExpertJob(
        subset=subset, subset_file=subset_file, out_dir=out_dir,
        base_model=base_model_path(settings),
        lora_r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
        lora_targets=tuple(settings.lora_targets), learning_rate=settings.learning_rate,
        epochs=settings.epochs, max_length=settings.max_length, batch_size=settings.batch_size,
        grad_accum=settings.grad_accum, seed=settings.seed, save_steps=settings.save_steps,
        limit=limit, max_steps=max_steps, gradient_checkpointing=settings.gradient_checkpointing,
        bf16=settings.train_bf16, padding_free=settings.train_padding_free, lora_layers=settings.lora_layers,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy train expert", description=__doc__)
    parser.add_argument("--subset", required=True, choices=SUBSET_CHOICES, help="which subset to train on")
    parser.add_argument("--subset-file", type=Path,
                        help="subset JSONL (default: <data_dir>/subsets/<subset>.jsonl from `select split`)")
    parser.add_argument("--limit", type=int, help="train on the first N samples of a seeded shuffle")
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps (overrides epochs)")
    parser.add_argument("--out", type=Path, help="adapter folder (default: <data_dir>/experts/<subset>)")
    parser.add_argument("--force", action="store_true", help="train again even if the expert is up to date")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--base-model", help="base model (EMPATHY_BASE_MODEL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.errors import ConfigError
    from empathy.layout import Layout
    from empathy.logs import setup_logging
    from empathy.settings import get_settings
    from training.experts import is_up_to_date, train_expert
    from training.sft_data import subset_path

    settings = get_settings(data_dir=args.data_dir, base_model=args.base_model)
    setup_logging(settings.log_level)
    for flag, value in (("--limit", args.limit), ("--max-steps", args.max_steps)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer; got {value}.")
    job = job_from_settings(settings, args.subset,
                            args.subset_file or subset_path(settings.data_dir, args.subset),
                            args.out or Layout(settings.data_dir).expert(args.subset),
                            limit=args.limit, max_steps=args.max_steps)
    if not args.force and is_up_to_date(job):
        print(f"expert {job.out_dir} is up to date (same settings and subset); --force trains it again")
        return 0
    meta = train_expert(job)
    summary = {key: meta[key] for key in ("subset", "samples", "steps", "final_loss", "tokens_seen",
                                          "wall_time_s")}
    print(json.dumps({"expert": str(job.out_dir), **summary}, indent=2))
    return 0
