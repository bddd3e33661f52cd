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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from empathy.settings import Settings
    from training.moe.train import MoeJob


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
                        "its gates; writes <data_dir>/eval/moe/<out name>.json and <out name>_gates.png")
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--base-model", help="base model of the experts (EMPATHY_BASE_MODEL)")
    return parser


def job_from_settings(settings: Settings, max_steps: int | None = None, data_file: Path | None = None,
                      out_dir: Path | None = None, sensibility: Path | None = None,
                      rationality: Path | None = None) -> MoeJob:
    """The gate-training job the settings describe (defaults: the data dir's experts, the full subset and
    `<data_dir>/moe`); the one place settings become MoE training options (CLI and pipeline)."""
    from empathy.base_model import base_model_path
    from empathy.layout import Layout
    from training.moe.train import MoeJob

    layout = Layout(settings.data_dir)
    return MoeJob(
        base_model=base_model_path(settings),
        experts=(("sensibility", sensibility or layout.expert("sensibility")),
                 ("rationality", rationality or layout.expert("rationality"))),
        data_file=data_file or layout.subset("full"), out_dir=out_dir or layout.moe,
        routed=settings.moe_routed, learning_rate=settings.moe_learning_rate, epochs=settings.moe_epochs,
        batch_size=settings.moe_batch_size, max_length=settings.max_length, seed=settings.seed,
        limit=settings.moe_limit, max_steps=max_steps, bf16=settings.train_bf16,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.errors import ConfigError
    from empathy.logs import setup_logging
    from empathy.settings import get_settings
    from training.moe.train import is_up_to_date, train_moe

    settings = get_settings(data_dir=args.data_dir, base_model=args.base_model, moe_limit=args.limit,
                            moe_routed=args.routed)
    setup_logging(settings.log_level)
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be a positive integer; got {args.max_steps}.")
    job = job_from_settings(settings, max_steps=args.max_steps, data_file=args.data_file, out_dir=args.out,
                            sensibility=args.sensibility, rationality=args.rationality)
    if not args.force and is_up_to_date(job):
        print(f"MoE {job.out_dir} is up to date (same experts, data and settings); --force trains it again")
    else:
        meta = train_moe(job)
        keys = ("samples", "steps", "first_loss", "final_loss", "wall_time_s")
        print(json.dumps({"moe": str(job.out_dir), **{k: meta[k] for k in keys}}, indent=2))
    if args.evaluate:
        evaluate(settings, job.out_dir)
    return 0


def evaluate(settings: Settings, moe_dir: Path) -> None:
    """Held-out NLL against the router, blends and experts (and every MoE evaluated before), gate probe;
    writes `<data_dir>/eval/moe/<artifact name>.json` and `..._gates.png` (beside, not among, the eval
    runs of `empathy eval table`)."""
    from empathy.layout import Layout
    from empathy.router import ARTIFACT_JSON
    from training.moe.evaluate import gate_plot, gate_probe, gate_table, heldout_nll, nll_table

    layout = Layout(settings.data_dir)
    out = layout.eval / "moe"
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"moe": str(moe_dir)}
    if (layout.router / ARTIFACT_JSON).is_file():
        nll = heldout_nll(settings, moe_dir)
        print(nll_table(nll))
        print(f"held-out samples the gates trained on: {nll['trained_on_heldout']}")
        _against_other_moes(nll, out, moe_dir.name)
        result["heldout"] = nll
    else:
        print("no router artifact: the held-out comparison needs `empathy train router` first")
    probe = gate_probe(moe_dir)
    print(gate_table(probe))
    result["gates"] = probe
    result["gates_png"] = str(gate_plot(probe, out / f"{moe_dir.name}_gates.png"))
    path = out / f"{moe_dir.name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path} and {result['gates_png']}")


def _against_other_moes(nll: dict[str, Any], out: Path, name: str) -> None:
    """Paired NLL difference to each MoE artifact evaluated before (e.g. `--routed all` against `mlp`)."""
    from training.moe.evaluate import moe_difference

    for other in sorted(out.glob("*.json")):
        if other.stem == name:
            continue
        diff = moe_difference(nll, json.loads(other.read_text()).get("heldout", {}))
        if diff is not None:
            print(f"{name} minus {other.stem}: {diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}] "
                  f"NLL per reply token (paired, n = {diff['n']})")
