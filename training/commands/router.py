"""`empathy train router`: learn which blend of the grid explains a conversation's gold reply best.

Targets: the gold reply's mean token NLL under each blend (scored through vLLM's prompt_logprobs, or
transformers+PEFT). Inputs (EMPATHY_ROUTER_FEATURES): `reply-kind` (default), the judge's R that the context
calls for, predicted from the context by a ridge regression fitted on every scored train reply, with a line
per blend from it to the NLL (`training/router/kind.py`); or `context`, the context's all-MiniLM-L6-v2
embedding plus cheap statistics with a softmax regression on softmax(-NLL / T). Writes `<data_dir>/router/`
(router.json with held-out and cross-fitted metrics, router.npz).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy train router", description=__doc__)
    parser.add_argument("--data-dir", help="artifact folder (EMPATHY_DATA_DIR)")
    parser.add_argument("--split", choices=["train", "valid"], default="train",
                        help="corpus split the targets are computed on (samples in the subsets are skipped)")
    parser.add_argument("--limit", type=int, help="score only N samples (EMPATHY_ROUTER_LIMIT)")
    parser.add_argument("--backend", choices=["auto", "vllm", "transformers"], default=None,
                        help="NLL scoring: vLLM prompt_logprobs or transformers+PEFT "
                        "(EMPATHY_ROUTER_NLL_BACKEND; auto: vLLM on a GPU, transformers on CPU)")
    parser.add_argument("--url", help="a running vLLM server serving the blends (default: start one)")
    parser.add_argument("--temperature", type=float,
                        help="target softmax temperature (EMPATHY_ROUTER_TEMPERATURE)")
    parser.add_argument("--experts-only", action="store_true",
                        help="grid {0, 1} from the two experts, without blends (smoke runs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from empathy.layout import Layout
    from empathy.logs import setup_logging
    from empathy.settings import get_settings
    from training.router.grid import expert_grid, read_blend_grid
    from training.router.train import train_router

    settings = get_settings(data_dir=args.data_dir, router_temperature=args.temperature,
                            router_nll_backend=args.backend)
    setup_logging(settings.log_level)
    adapters = expert_grid(settings.data_dir) if args.experts_only else read_blend_grid(settings.data_dir)[0]
    meta = train_router(settings, adapters, args.split, args.limit or settings.router_limit,
                        backend=settings.router_nll_backend, url=args.url)
    print(format_metrics(meta["metrics"]))
    print(f"router saved in {Layout(settings.data_dir).router}")
    return 0


def format_metrics(report: dict[str, Any]) -> str:
    """Held-out mean NLL per reply token (each fixed blend, the router, the oracle) as a markdown table, and
    the cross-fitted comparison over all samples."""
    metrics = report["heldout"]
    rows = [f"| blend {w} | {v:.4f} |" for w, v in metrics["fixed"].items()]
    rows += [f"| router (argmax) | {metrics['router_argmax']:.4f} |",
             f"| router (expected weight) | {metrics['router_expected']:.4f} |",
             f"| oracle per sample | {metrics['oracle']:.4f} |"]
    head = [f"held-out samples: {metrics['n']}", "", "| choice | mean NLL |", "|---|---|"]
    diff = metrics.get("router_minus_best_fixed")
    if isinstance(diff, dict) and diff.get("low") is not None:
        rows.append(f"| router - best fixed (paired, 95% CI) | {_ci(diff)} |")
    tail = ["", f"router choices: {json.dumps(metrics['choice_counts'])}",
            f"oracle choices: {json.dumps(metrics['oracle_counts'])}"]
    cross = report.get("crossfit")
    if cross:
        tail += ["", f"cross-fitted over all {cross['n']} samples ({cross['folds']} folds by conversation, "
                 f"each routed by a router that never saw it): router {cross['router']:.4f}, best fixed "
                 f"blend of the other folds {cross['fixed_out_of_fold']:.4f}, router - fixed "
                 f"{_ci(cross['router_minus_fixed'])}"]
    return "\n".join(head + rows + tail)


def _ci(stat: dict[str, Any]) -> str:
    return f"{stat['mean']:+.4f} [{stat['low']:+.4f}, {stat['high']:+.4f}]"
