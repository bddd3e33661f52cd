"""`empathy train moe`: the paper's token-level MoE of the two experts; trains its gates (resumable).

Per decoder layer a gate (linear on the MLP input, softmax over the experts) mixes the sensibility and
rationality experts' LoRA deltas at gate/up/down_proj token by token; attention takes the experts' mean
delta (`--routed all`: attention gets a gate too). Base model and experts stay frozen; only the gates
learn, on the LM loss of the replies. Writes `<data_dir>/moe/`, which vLLM serves as model `empathy-moe`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy train moe", description=__doc__)
    parser.add_argument("--data-file", type=Path,
                        help="training conversations, subset JSONL (default: <data_dir>/subsets/full.jsonl, "
                        "the paper's full data)")
    parser.add_argument("--limit", type=int, help="train on the first N samples of a seeded shuffle "
                        "(EMPATHY_MOE_LIMIT)")
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps (overrides epochs)")
    parser.add_argument("--routed", choices=["mlp", "all"], help="modules mixed per token "
                        "(EMPATHY_MOE_ROUTED; mlp = gate/up/down as the paper, all = attention too)")
    for subset in ("sensibility", "rationality"):
        parser.add_argument(f"--{subset}", type=Path,
                            help=f"expert folder (default <data_dir>/experts/{subset})")
    parser.add_argument("--out", type=Path, help="artifact folder (default: <data_dir>/moe)")
    parser.add_argument("--force", action="store_true", help="train again even if the artifact is up to date")
    parser.add_argument("--evaluate", action="store_true",
                        help="then compare it on the router's held-out conversations (paired NLL) and probe "
                        "its gates; writes <data_dir>/eval/moe.json and moe_gates.png")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--base-model", help="base model of the experts (EMPATHY_BASE_MODEL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.errors import ConfigError
    from empathy.logs import setup_logging
    from empathy.settings import get_settings
    from training.base_model import resolve_base_model
    from training.moe.train import MoeJob, is_up_to_date, train_moe
    from training.sft_data import subset_path

    settings = get_settings(data_dir=args.data_dir, base_model=args.base_model, moe_limit=args.limit,
                            moe_routed=args.routed)
    setup_logging(settings.log_level)
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be a positive integer; got {args.max_steps}.")
    experts = settings.data_dir / "experts"
    job = MoeJob(
        base_model=resolve_base_model(settings.base_model, settings.data_dir),
        experts=(("sensibility", args.sensibility or experts / "sensibility"),
                 ("rationality", args.rationality or experts / "rationality")),
        data_file=args.data_file or subset_path(settings.data_dir, "full"),
        out_dir=args.out or settings.data_dir / "moe", routed=settings.moe_routed,
        learning_rate=settings.moe_learning_rate, epochs=settings.moe_epochs,
        batch_size=settings.moe_batch_size, max_length=settings.max_length, seed=settings.seed,
        limit=settings.moe_limit, max_steps=args.max_steps,
    )
    if not args.force and is_up_to_date(job):
        print(f"MoE {job.out_dir} is up to date (same experts, data and settings); --force trains it again")
    else:
        meta = train_moe(job)
        keys = ("samples", "steps", "first_loss", "final_loss", "wall_time_s")
        print(json.dumps({"moe": str(job.out_dir), **{k: meta[k] for k in keys}}, indent=2))
    if args.evaluate:
        evaluate(settings, job.out_dir)
    return 0


def evaluate(settings: Any, moe_dir: Path) -> None:
    from training.moe.evaluate import gate_plot, gate_probe, gate_table, heldout_nll, nll_table

    out = Path(settings.data_dir) / "eval"
    result: dict[str, object] = {"moe": str(moe_dir)}
    if (Path(settings.data_dir) / "router" / "router.json").is_file():
        nll = heldout_nll(settings, moe_dir)
        print(nll_table(nll))
        result["heldout"] = nll
    else:
        print("no router artifact: the held-out comparison needs `empathy train router` first")
    probe = gate_probe(moe_dir)
    print(gate_table(probe))
    result["gates"] = probe
    result["gates_png"] = str(gate_plot(probe, out / "moe_gates.png"))
    (out / "moe.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'moe.json'} and {result['gates_png']}")
