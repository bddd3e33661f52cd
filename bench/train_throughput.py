"""Training throughput of the expert trainer (TRL SFT + LoRA) on the default base model, in tokens/s.

    .venv/bin/python bench/train_throughput.py [--steps 24] [--batch-size 8] [--variants today,ours,...]

Trains each variant on the same samples for the same steps, in one run, and prints for each: tokens seen
(without padding), train runtime (model loading and tokenizing excluded), tokens/s, the mean train loss over
the steps and the last logged loss; then each variant's speed-up and loss ratio against `today` (the trainer
as
it was: fp32, every layer, padded batches). Without `--subset-file` the first samples of the
EmpatheticDialogues `valid` split (EMPATHY_CORPUS_PATH) are written to a temporary subset.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

# name -> ExpertJob fields that differ from the job built from settings
VARIANTS: dict[str, dict[str, Any]] = {
    "today": {"bf16": False, "padding_free": False, "lora_layers": None, "reply_head": False},
    "bf16": {"bf16": True, "padding_free": False, "lora_layers": None, "reply_head": False},
    "bf16+head": {"bf16": True, "padding_free": False, "lora_layers": None, "reply_head": True},
    "bf16+head+padfree": {"bf16": True, "padding_free": True, "lora_layers": None, "reply_head": True},
    "bf16+head+padfree+last10": {"bf16": True, "padding_free": True, "lora_layers": 10, "reply_head": True},
    "bf16+head+last12": {"bf16": True, "padding_free": False, "lora_layers": 12, "reply_head": True},
    "bf16+head+last15": {"bf16": True, "padding_free": False, "lora_layers": 15, "reply_head": True},
    "bf16+head+last20": {"bf16": True, "padding_free": False, "lora_layers": 20, "reply_head": True},
    "fp32+head": {"bf16": False, "padding_free": False, "lora_layers": None, "reply_head": True},
    "ours": {},  # the settings' defaults
    "TRL defaults": {"bf16": False, "padding_free": False, "lora_layers": None, "reply_head": False,
                     "gradient_checkpointing": True, "group_by_length": False},
}


def corpus_subset(folder: Path, n: int) -> Path:
    from empathy.settings import get_settings
    from selection.corpus import load_corpus

    samples = load_corpus(get_settings(), "valid").samples[:n]
    path = folder / "subsets" / "bench.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"id": s.id, "messages": s.messages()}) + "\n" for s in samples))
    return path


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from empathy.settings import get_settings
    from training.commands.expert import job_from_settings
    from training.experts import train_expert

    settings = get_settings()
    with tempfile.TemporaryDirectory() as tmp:
        subset = args.subset_file or corpus_subset(Path(tmp), args.steps * args.batch_size)
        job = job_from_settings(settings, "full", subset, Path(tmp) / "experts" / "bench")
        job = replace(job, batch_size=args.batch_size, max_steps=args.steps, save_steps=10 * args.steps,
                      **VARIANTS[name])
        meta = train_expert(job)
    runtime = float(meta["train_runtime_s"])
    return {"steps": meta["steps"], "samples": meta["samples"], "tokens_seen": meta["tokens_seen"],
            "train_runtime_s": round(runtime, 1), "tokens_per_s": round(meta["tokens_seen"] / runtime, 1),
            "loss_mean": round(meta["train_loss_mean"], 4), "loss_last": round(meta["final_loss"], 4),
            "job": {k: v for k, v in job.settings().items() if k in ("bf16", "padding_free", "lora_layers",
                                                                     "reply_head", "group_by_length")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--variants", default="today,ours",
                        help=f"comma-separated, first is the baseline; known: {', '.join(VARIANTS)}")
    parser.add_argument("--subset-file", type=Path)
    args = parser.parse_args()
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    names = args.variants.split(",")
    results = {}
    for name in names:
        results[name] = run_variant(name, args)
        print(json.dumps({name: results[name]}), flush=True)
    base = results[names[0]]
    for result in results.values():
        result["speedup_vs_" + names[0]] = round(result["tokens_per_s"] / base["tokens_per_s"], 2)
        result["loss_ratio_vs_" + names[0]] = round(result["loss_mean"] / base["loss_mean"], 4)
    import torch

    print(json.dumps({"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), **results},
                     indent=2))


if __name__ == "__main__":
    main()
