"""Training throughput of the expert trainer (TRL SFT + LoRA) on the default base model, in tokens/s.

    .venv/bin/python bench/train_throughput.py [--steps 24] [--batch-size 8] [--subset-file PATH]

Without `--subset-file`, the first samples of the EmpatheticDialogues `valid` split (EMPATHY_CORPUS_PATH)
are written to a temporary subset. Trains twice on the same samples, with TRL's defaults (activation
checkpointing, random batches) and with ours (no checkpointing, length-grouped batches), and prints for each
steps, samples, tokens seen, train runtime and tokens/s (input tokens without padding over the trainer's
runtime, so model loading and tokenizing are excluded), then the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def corpus_subset(folder: Path, n: int) -> Path:
    from empathy.settings import get_settings
    from selection.corpus import load_corpus

    samples = load_corpus(get_settings(), "valid").samples[:n]
    path = folder / "subsets" / "bench.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"id": s.id, "messages": s.messages()}) + "\n" for s in samples))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--subset-file", type=Path)
    args = parser.parse_args()
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from empathy.settings import get_settings
    from training.base_model import resolve_base_model
    from training.experts import ExpertJob, train_expert

    settings = get_settings()
    results = {}
    for name, trl_defaults in (("TRL defaults", True), ("ours", False)):
        with tempfile.TemporaryDirectory() as tmp:
            subset = args.subset_file or corpus_subset(Path(tmp), args.steps * args.batch_size)
            job = ExpertJob(
                subset="full", subset_file=subset, out_dir=Path(tmp) / "experts" / "bench",
                base_model=resolve_base_model(settings.base_model, settings.data_dir),
                lora_r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                lora_targets=tuple(settings.lora_targets), learning_rate=settings.learning_rate,
                max_length=settings.max_length, batch_size=args.batch_size, max_steps=args.steps,
                save_steps=10 * args.steps,
                # TRL's defaults: activation checkpointing on, batches in random order (more padding).
                gradient_checkpointing=trl_defaults, group_by_length=not trl_defaults,
            )
            meta = train_expert(job)
        runtime = float(meta["train_runtime_s"])
        results[name] = {
            "steps": meta["steps"], "batch_size": args.batch_size, "samples": meta["samples"],
            "tokens_seen": meta["tokens_seen"], "train_runtime_s": runtime,
            "tokens_per_s": round(meta["tokens_seen"] / runtime, 1),
            "s_per_step": round(runtime / meta["steps"], 2),
        }
    ours, base = results["ours"], results["TRL defaults"]
    speedup = round(ours["tokens_per_s"] / base["tokens_per_s"], 2)
    print(json.dumps({"base_model": settings.base_model, "cpu_threads": os.cpu_count(), **results,
                      "speedup_tokens_per_s": speedup}, indent=2))

if __name__ == "__main__":
    main()
