"""`empathy-moe` on the router's held-out conversations, and what its gates learned.

Held-out NLL: the router's own held-out samples (same split, limit, exclusions and conversation hash as
`empathy train router`), the blends' NLLs from the router's NLL cache, the router refit on the held-in part
exactly as `fit_router` does for its held-out metrics (so its choices never saw these samples), and the
MoE's mean reply-token NLL from the transformers reference with the same tokenization. Each comparison is
paired per sample (same gold reply): mean of NLL(moe) - NLL(other) with a 95% t interval.

Gate probe: mean gate weight on the sensibility expert per layer, over the tokens of first turns that call
for feeling and of practical ones (the project's probe set, `tests/data/probes.jsonl`), as a table (with a
bootstrap interval of the difference) and a PNG.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from empathy.settings import Settings


def heldout_nll(settings: Settings, moe_dir: Path, batch_size: int = 8) -> dict[str, Any]:
    """Paired comparison of the MoE against the router, the best fixed blend and each expert."""
    from empathy.layout import Layout
    from empathy.router import ARTIFACT_JSON
    from empathy.stats import mean_ci
    from training.router.cache import load_cache

    folder = Layout(settings.data_dir).router
    meta = json.loads((folder / ARTIFACT_JSON).read_text())
    samples, held, probs = _router_heldout(settings, meta)
    rows = load_cache(folder, meta["adapters"])
    test = [s for s, h in zip(samples, held, strict=True) if h]
    nll = np.array([rows[s.id] for s in test])
    grid = [float(w) for w in meta["grid"]]
    moe = np.array(moe_nll(settings, moe_dir, [s.messages() for s in test], batch_size))
    choice = nll[np.arange(len(test)), probs.argmax(1)]
    best = int(nll.mean(0).argmin())
    others = {"router": choice, f"best fixed blend ({grid[best]:g})": nll[:, best]}
    for name, weight in (("sensibility expert", 1.0), ("rationality expert", 0.0)):
        if weight in grid:
            others[name] = nll[:, grid.index(weight)]
    return {"n": len(test), "moe": float(moe.mean()),
            "means": {k: float(v.mean()) for k, v in others.items()},
            "moe_minus": {k: mean_ci((moe - v).tolist()) for k, v in others.items()},
            "router_heldout_check": meta["metrics"]["heldout"]["router_argmax"],
            "trained_on_heldout": trained_on(moe_dir, [s.id for s in test]),
            "per_sample": {s.id: float(v) for s, v in zip(test, moe, strict=True)}}


def trained_on(moe_dir: Path, ids: Sequence[str]) -> int:
    """How many of `ids` the MoE's gates trained on (its seeded pick of its data file): 0 for a clean
    held-out comparison (a --limit above the full expert's limit would pick router samples)."""
    from empathy.moe.artifact import META_FILE
    from training.sft_data import read_subset, take

    meta = json.loads((moe_dir / META_FILE).read_text())
    if "data_file" not in meta:  # composed, not trained
        return 0
    job = meta["settings"]
    seen = {str(r.get("id")) for r in take(read_subset(Path(meta["data_file"])), job["limit"], job["seed"])}
    return sum(i in seen for i in ids)


def moe_difference(result: dict[str, Any], other: dict[str, Any]) -> dict[str, Any] | None:
    """Paired mean of NLL(this MoE) - NLL(other MoE) over their common held-out samples (None if the
    results share none, e.g. an older result without per-sample NLLs)."""
    from empathy.stats import mean_ci

    mine, theirs = result.get("per_sample", {}), other.get("per_sample", {})
    common = [i for i in mine if i in theirs]
    if not common:
        return None
    return {"n": len(common), **mean_ci([mine[i] - theirs[i] for i in common])}


def _router_heldout(settings: Settings, meta: dict[str, Any]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The router's samples, its held-out mask and, for the held-out ones, the probabilities of the router
    refit on the held-in part as `fit_router` does for its held-out metrics (either router kind: a
    softmax regression on the context features, or the reply-kind model with its NLL head)."""
    from empathy.layout import Layout
    from training.router.cache import load_cache
    from training.router.fit import holdout_mask, softmax_head
    from training.router.kind import fit_nll_head
    from training.router.kind_data import context_features, fit_reply_kind, mean_reply_tokens
    from training.router.train import router_samples

    folder = Layout(settings.data_dir).router
    samples = router_samples(settings, meta["split"], meta["n_samples"])
    conv_ids = [s.conv_id for s in samples]
    held = holdout_mask(conv_ids, meta["holdout"])
    rows = load_cache(folder, meta["adapters"])
    nll = np.array([rows[s.id] for s in samples])
    features = context_features(folder, samples)
    held_in = [c for c, h in zip(conv_ids, held, strict=True) if not h]
    if meta.get("features") == "reply-kind":
        kind, _ = fit_reply_kind(settings, samples, features, folder)
        inputs = kind.predict(features)
        weights = fit_nll_head(inputs[~held], nll[~held], mean_reply_tokens(settings, samples))
    else:
        inputs = features
        weights = softmax_head(meta["temperature"], meta["l2"])(features[~held], nll[~held], held_in)
    return samples, held, weights.probs(inputs[held])


def moe_nll(settings: Settings, moe_dir: Path, conversations: Sequence[Sequence[dict[str, str]]],
            batch_size: int = 8) -> list[float]:
    """Mean reply-token NLL of each conversation under the MoE (the router scorer's tokenization)."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from training.moe.reference import load_reference
    from training.router.nll import reply_span, torch_nll_batch

    reference = load_reference(moe_dir)
    tokenizer = AutoTokenizer.from_pretrained(moe_dir)
    items = [reply_span(tokenizer, c, max_tokens=settings.vllm_max_model_len - 1) for c in conversations]
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    out = [0.0] * len(items)
    for start in tqdm(range(0, len(order), batch_size), desc="MoE NLL", unit="batch"):
        batch = order[start:start + batch_size]
        values = torch_nll_batch(reference.model, [items[i] for i in batch], tokenizer.pad_token_id or 0)
        for index, value in zip(batch, values, strict=True):
            out[index] = value
    return out


def probe_gates(moe_dir: Path, probes: Sequence[Any]) -> tuple[list[int], np.ndarray]:
    """The gated layers and [probe, layer]: the mean gate weight on the sensibility expert (expert 0) over
    the probe's tokens."""
    from transformers import AutoTokenizer

    from training.moe.reference import load_reference

    reference = load_reference(moe_dir)
    tokenizer = AutoTokenizer.from_pretrained(moe_dir)
    gates: Any = reference.gates  # {layer: {kind: LayerGate}}
    layers = [i for i in range(len(gates)) if "mlp" in gates[str(i)]]
    out = np.zeros((len(probes), len(layers)))
    for row, probe in enumerate(probes):
        encoded: Any = tokenizer.apply_chat_template([{"role": "user", "content": probe.text}],
                                                     add_generation_prompt=True, return_dict=True)
        ids = encoded["input_ids"]
        with torch.no_grad():
            reference(input_ids=torch.tensor([ids]))
        out[row] = [float(gates[str(i)]["mlp"].current[0, :, 0].mean()) for i in layers]
    return layers, out


def gate_probe(moe_dir: Path, probes_file: Path | None = None) -> dict[str, Any]:
    """Per layer: mean gate on sensibility for the feeling and the practical probes (the project's probe
    set, `tests/data/probes.jsonl`) and their difference with a bootstrap 95% interval."""
    from training.evaluation.probes import DEFAULT_PROBES, difference_interval, read_probes

    probes = read_probes(probes_file or DEFAULT_PROBES)
    layers, gates = probe_gates(moe_dir, probes)
    kinds = np.array([p.kind for p in probes])
    feeling, practical = gates[kinds == "feeling"], gates[kinds == "practical"]
    diffs = [difference_interval(feeling[:, i], practical[:, i]) for i in range(gates.shape[1])]
    overall = difference_interval(feeling.mean(1), practical.mean(1))  # each probe's mean over the layers
    return {"n": {"feeling": len(feeling), "practical": len(practical)}, "layers": layers,
            "feeling": feeling.mean(0).tolist(), "practical": practical.mean(0).tolist(),
            "difference": [d[0] for d in diffs], "ci95": [[d[1], d[2]] for d in diffs],
            "overall": {"feeling": float(feeling.mean()), "practical": float(practical.mean()),
                        "difference": overall[0], "ci95": [overall[1], overall[2]]}}


def gate_table(probe: dict[str, Any]) -> str:
    lines = ["| layer | feeling: gate on sensibility | practical: gate on sensibility | difference, 95% CI |",
             "|---|---|---|---|"]
    for i, (f, p) in enumerate(zip(probe["feeling"], probe["practical"], strict=True)):
        lo, hi = probe["ci95"][i]
        lines.append(f"| {probe['layers'][i]} | {f:.4f} | {p:.4f} | {f - p:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    if "overall" in probe:
        o = probe["overall"]
        lo, hi = o["ci95"]
        lines.append(f"| all layers | {o['feeling']:.4f} | {o['practical']:.4f} | {o['difference']:+.4f} "
                     f"[{lo:+.4f}, {hi:+.4f}] |")
    return "\n".join(lines)


def gate_plot(probe: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name in ("feeling", "practical"):
        values = probe[name]
        ax.plot(probe["layers"], values, marker="o", label=f"{name} contexts")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("mean gate on sensibility expert")
    ax.set_title("empathy-moe: what the gates learned")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def nll_table(result: dict[str, Any]) -> str:
    lines = [f"MoE held-out NLL per reply token: {result['moe']:.4f} (n = {result['n']})",
             "| against | its NLL | moe minus it (95% CI) |", "|---|---|---|"]
    for name, ci in result["moe_minus"].items():
        lines.append(f"| {name} | {result['means'][name]:.4f} | {ci['mean']:+.4f} "
                     f"[{ci['low']:+.4f}, {ci['high']:+.4f}] |")
    return "\n".join(lines)
