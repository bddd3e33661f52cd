"""How far a text judge of this machine's size can follow the paper's judge on the valid split: what the
paper's discard bucket is made of, and how held-out Spearman S/R grow with the number of scored replies.

    .venv/bin/python bench/judge_ceiling.py [--fractions 0.125 0.25 0.5 1] [--seeds 3]

1. The paper's rule (sensibility: S > 5 and R < 5; rationality: R > 5; the rest discarded) discards every
   reply judged R exactly 5, whatever its S. The script counts the discards by kind on all valid labels:
   at the gap (R exactly at the rationality threshold) or scored low (R below it and S at most 5).
2. A learning curve: MiniLM embeddings of the reply and of the whole context with the reply (frozen, the
   encoder the distilled judges use), a ridge per fraction of the fitting conversations (alpha by grouped
   CV), held-out Spearman S and R on the same held-out conversations as the judges' fits (holdout 0.2,
   seed 0). Each fraction below 1 is drawn --seeds times; the means are printed.

Numbers go to bench/out/judge_ceiling-<time>.json. Labels: EMPATHY_DISTILL_LABELS_PATH (the paper's
val_results.json). About 3 minutes on 2 cores (the embeddings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import OUT  # a script beside this one


def curve(x: np.ndarray, y: np.ndarray, groups: np.ndarray, fit: np.ndarray, held: np.ndarray,
          fractions: Sequence[float], seeds: int) -> list[dict[str, float]]:
    """Held-out Spearman S/R of a ridge fitted on a fraction of the fitting conversations."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge

    from selection.distill.embed import choose_alpha

    convs = np.unique(groups[fit])
    rows = []
    for frac in fractions:
        got = []
        for seed in range(seeds if frac < 1 else 1):
            keep = set(np.random.default_rng(seed).choice(convs, int(len(convs) * frac), replace=False))
            part = np.array([i for i in fit if groups[i] in keep])
            alpha = choose_alpha(x[part], y[part], groups[part], 5, (3.0, 10.0, 30.0, 100.0))
            pred = Ridge(alpha=alpha).fit(x[part], y[part]).predict(x[held])
            got.append((spearmanr(pred[:, 0], y[held, 0]).statistic,
                        spearmanr(pred[:, 1], y[held, 1]).statistic, len(part)))
        mean = np.mean(np.array(got), axis=0)
        rows.append({"fraction": frac, "fit_replies": float(mean[2]), "spearman_s": float(mean[0]),
                     "spearman_r": float(mean[1])})
        print(f"fit on {frac:>6.3f} of the conversations ({mean[2]:5.0f} replies): held-out Spearman "
              f"S {mean[0]:.3f}  R {mean[1]:.3f}", flush=True)
    return rows


def features(pairs: Sequence[Any]) -> np.ndarray:
    """[reply embedding, embedding of the whole context joined with the reply] per labelled pair."""
    from selection.distill.embed import reply_embeddings
    from selection.distill.text import normalize

    replies = [normalize(p.response) for p in pairs]
    dialogues = [" | ".join(normalize(t) for t in p.context) + " || " + r for p, r in zip(pairs, replies,
                                                                                           strict=True)]
    return np.hstack([reply_embeddings(replies), reply_embeddings(dialogues)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    p.add_argument("--seeds", type=int, default=3, help="draws of each fraction below 1")
    args = p.parse_args()
    from empathy.settings import get_settings
    from selection.distill.metrics import discard_kinds
    from selection.distill.service import load_labels
    from selection.distill.splits import split_by_conversation

    settings = get_settings()
    pairs = load_labels(settings, "valid", Path(settings.distill_labels_path),
                        settings.distill_labels_format).pairs
    y = np.array([[q.sensibility, q.rationality] for q in pairs])
    kinds = discard_kinds(y)
    kinds["at_gap_with_s_above_5"] = int(((y[:, 1] == 5.0) & (y[:, 0] > 5.0)).sum())
    print(f"the paper's valid labels: {kinds['discards']} of {len(y)} discarded; {kinds['at_gap']} of them "
          f"judged R exactly 5 ({kinds['at_gap_with_s_above_5']} of those with S > 5), {kinds['scored_low']} "
          "scored low (R < 5, S <= 5)", flush=True)
    started = time.perf_counter()
    x = features(pairs)
    print(f"embeddings: {time.perf_counter() - started:.0f} s", flush=True)
    fit, held = (np.array(part) for part in split_by_conversation(pairs, 0.2, 0))
    rows = curve(x, y, np.array([q.conv for q in pairs]), fit, held, args.fractions, args.seeds)
    OUT.mkdir(exist_ok=True)
    out = OUT / f"judge_ceiling-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    out.write_text(json.dumps({"discard_kinds": kinds, "curve": rows, "held_out": len(held),
                               "labels": str(settings.distill_labels_path)}, indent=1))
    print(f"numbers in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
