"""Replies that loop: loop share and Dist-2 of each model's replies, greedy and with the server's defaults.

    .venv/bin/python bench/reply_loops.py --url http://127.0.0.1:8000/v1 \
        --models base,empathy-sensibility,empathy-rationality,empathy [--n 100] [--split test] \
        [--max-tokens N] [--api-key KEY] [--concurrency 8] [--out after.json] [--baseline before.json]

Any OpenAI-compatible endpoint: the gateway (`empathy up` / `empathy serve`) or a vLLM server. For each
model, one reply to each of the first --n conversations of the split (held-out test contexts, the same for
every model) in two modes:
- `greedy`: the request sets `temperature: 0` and no other sampling field;
- `defaults`: the request sets no sampling field at all, so the server's (the gateway's per-model) defaults
  apply.
--max-tokens, when given, is sent in both modes (it bounds the time; leave it out to see what a client that
sends nothing gets). Prints, per model and mode: the share of replies with a loop (a word 4-gram three or
more times in one reply), Dist-2 (the paper's), mean reply tokens, each with a 95% bootstrap interval.
--out saves the replies and numbers; --baseline FILE (an earlier --out, e.g. before the gateway had
per-model defaults) adds the paired difference now - then on the same contexts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.evaluation.bootstrap import bootstrap_intervals, paired_difference, run_stats  # noqa: E402
from training.evaluation.table import format_cell  # noqa: E402

MODES = {"greedy": True, "defaults": False}
SHOWN = [("loop", "Loop%"), ("dist2", "Dist-2"), ("avg_len", "Len")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--models", required=True, help="comma-separated model names, as the server lists")
    parser.add_argument("--n", type=int, default=100, help="contexts (the first N of the split; default 100)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--max-tokens", type=int, help="max_tokens sent in both modes (default: not sent)")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--modes", default="greedy,defaults", help="greedy and/or defaults")
    parser.add_argument("--out", type=Path, help="save replies and numbers as JSON")
    parser.add_argument("--baseline", type=Path, help="an earlier --out: print the paired change against it")
    return parser.parse_args(argv)


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """Generate every model x mode on the same contexts; the references come along for the metrics."""
    from openai import OpenAI

    from empathy.settings import get_settings
    from training.evaluation.generate import generate
    from training.evaluation.run import eval_samples

    samples = eval_samples(get_settings(), args.split, args.n)
    contexts = [[{"role": m.role, "content": m.content} for m in s.context] for s in samples]
    client = OpenAI(base_url=args.url, api_key=args.api_key, timeout=1800, max_retries=0)
    runs: dict[str, dict[str, Any]] = {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            started = time.monotonic()
            replies = generate(client, [model] * len(contexts), contexts, args.max_tokens, args.concurrency,
                               greedy=MODES[mode])
            runs[f"{model} {mode}"] = {"model": model, "mode": mode, "replies": replies,
                                       "seconds": round(time.monotonic() - started, 1)}
    return {"url": args.url, "split": args.split, "max_tokens": args.max_tokens,
            "ids": [s.id for s in samples], "references": [s.response for s in samples], "runs": runs}


def report(result: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    refs = result["references"]
    lines = [f"{len(refs)} {result['split']} contexts, max_tokens {result['max_tokens']}",
             "| Model | Mode | " + " | ".join(t for _, t in SHOWN) + " | Gen s |", "|---" * 6 + "|"]
    for run in result["runs"].values():
        cells = bootstrap_intervals(run_stats(run["replies"], refs))
        lines.append(f"| {run['model']} | {run['mode']} | "
                     + " | ".join(format_cell(k, cells[k]) for k, _ in SHOWN) + f" | {run['seconds']} |")
    if baseline is not None and baseline["ids"] != result["ids"]:
        lines.append("(the baseline has other contexts: no paired comparison; use the same --split and --n)")
    elif baseline is not None:
        lines += ["", "now - baseline (paired on the same contexts; * = interval excludes 0)",
                  "| Model | Mode | " + " | ".join(t for _, t in SHOWN) + " |", "|---" * 5 + "|"]
        for key, run in result["runs"].items():
            before = baseline["runs"].get(key)
            if before is None:
                continue
            diff = paired_difference(run_stats(run["replies"], refs), run_stats(before["replies"], refs))
            lines.append(f"| {run['model']} | {run['mode']} | "
                         + " | ".join(format_cell(k, diff[k], signed=True) for k, _ in SHOWN) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    result = collect(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(report(result, baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
