"""Statistics for `empathy select report` (pure) and their plots (matplotlib, Agg)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selection.rule import BUCKETS
from selection.subsets import Scored

GRID = list(range(0, 11))  # score values 0-10 (G-Eval expectations are rounded into these cells)


def joint_histogram(items: Sequence[Scored]) -> list[list[int]]:
    """counts[s][r] of rounded (S, R) scores, 11 x 11."""
    counts = [[0] * len(GRID) for _ in GRID]
    for item in items:
        s = min(max(round(item.sensibility), 0), 10)
        r = min(max(round(item.rationality), 0), 10)
        counts[s][r] += 1
    return counts


def per_emotion(items: Sequence[Scored]) -> dict[str, dict[str, float]]:
    """emotion -> {"n": count, bucket: fraction}, emotions sorted by name."""
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        groups[item.sample.emotion or "(none)"][item.bucket] += 1
    table: dict[str, dict[str, float]] = {}
    for emotion in sorted(groups):
        counts = groups[emotion]
        n = sum(counts.values())
        table[emotion] = {"n": n, **{name: round(counts[name] / n, 4) for name in BUCKETS}}
    return table


def score_means(items: Sequence[Scored]) -> dict[str, float]:
    n = len(items) or 1
    return {"sensibility": round(sum(i.sensibility for i in items) / n, 4),
            "rationality": round(sum(i.rationality for i in items) / n, 4)}


def plot_heatmap(counts: list[list[int]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(counts, origin="lower", cmap="viridis")
    ax.set_xlabel("rationality (R)")
    ax.set_ylabel("sensibility (S)")
    ax.set_xticks(GRID)
    ax.set_yticks(GRID)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="replies")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_emotions(table: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    emotions = list(table)
    fig, ax = plt.subplots(figsize=(8, max(4, 0.25 * len(emotions))))
    left = [0.0] * len(emotions)
    for name, color in zip(BUCKETS, ("tab:red", "tab:blue", "tab:gray"), strict=True):
        values = [table[e][name] for e in emotions]
        ax.barh(emotions, values, left=left, color=color, label=name)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of replies")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def discard_overlap(items: Sequence[Scored], paper_discarded: set[str]) -> dict[str, float]:
    """Overlap of the selection's discard bucket with the paper's discard list, among the scored samples:
    how many of the paper's discards we discard (recall) and how many of ours the paper discarded
    (precision), and both discard fractions."""
    scored = {item.sample.id for item in items}
    ours = {item.sample.id for item in items if item.bucket == "discard"}
    paper = paper_discarded & scored
    both = len(ours & paper)
    return {"scored": len(scored), "ours": len(ours), "paper": len(paper), "both": both,
            "paper_discards_we_discard": both / len(paper) if paper else 0.0,
            "our_discards_paper_discards": both / len(ours) if ours else 0.0,
            "our_fraction": len(ours) / len(scored) if scored else 0.0,
            "paper_fraction": len(paper) / len(scored) if scored else 0.0}


def build_report(items: Sequence[Scored], meta: dict[str, Any], out: Path) -> dict[str, Any]:
    """The report dict (what `--json` prints) and its PNGs under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    counts = joint_histogram(items)
    emotions = per_emotion(items)
    label = f"{meta['judge']} ({meta['version']}), {meta['split']}"
    heatmap = plot_heatmap(counts, out / "score_heatmap.png", f"(S, R) of {label}")
    bars = plot_emotions(emotions, out / "emotion_fractions.png", f"subsets per emotion: {label}")
    return {**meta, "means": score_means(items), "joint_histogram": {"axes": ["sensibility", "rationality"],
            "values": GRID, "counts": counts}, "per_emotion": emotions,
            "plots": {"heatmap": str(heatmap), "emotions": str(bars)}}
