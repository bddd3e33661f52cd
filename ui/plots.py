"""Matplotlib figures of experiment results: pure functions of plain data (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

ACCENT = "#e8735a"
MUTED = "#8a8f98"


def _empty(message: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color=MUTED, fontsize=11)
    return fig


def strengths_plot(ratings: Mapping[str, Mapping[str, float]], title: str = "Bradley-Terry strength",
                   ) -> Figure:
    """Horizontal dots with 95% intervals, strongest on top (Elo-like scale)."""
    rows = sorted(((k, v) for k, v in ratings.items() if v.get("rating") is not None),
                  key=lambda kv: kv[1]["rating"])
    if not rows:
        return _empty("no pairwise votes yet")
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(rows) + 1.3))
    for y, (_, r) in enumerate(rows):
        low, high = r.get("low", r["rating"]), r.get("high", r["rating"])
        ax.plot([low, high], [y, y], color=ACCENT, alpha=0.45, linewidth=6, solid_capstyle="round")
        ax.plot([r["rating"]], [y], "o", color=ACCENT, markersize=9)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.axvline(1000, color=MUTED, linewidth=0.8, linestyle="--")
    ax.set_xlabel("rating (1000 = average; 400 points = 10x odds)")
    _style(ax, title)
    return fig


def win_matrix_plot(players: Sequence[str], matrix: Sequence[Sequence[float | None]]) -> Figure:
    """Heatmap of P(row beats column) with the value printed in each cell."""
    if len(players) < 2:
        return _empty("no pairwise votes yet")
    fig, ax = plt.subplots(figsize=(1.1 * len(players) + 2.5, 0.9 * len(players) + 1.5))
    values = [[float("nan") if v is None else float(v) for v in row] for row in matrix]
    image = ax.imshow(values, cmap="RdYlGn", vmin=0, vmax=1)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if v == v:  # not NaN
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=10)
    ax.set_xticks(range(len(players)), players, rotation=30, ha="right")
    ax.set_yticks(range(len(players)), players)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="row wins")
    _style(ax, "Win rate (row vs column)", grid=False)
    return fig


def histogram_plot(counts: Mapping[str, float], title: str, xlabel: str) -> Figure:
    """Bars of counts per label (e.g. router blend weight -> requests)."""
    if not counts:
        return _empty("no routed requests yet")
    labels = list(counts)
    fig, ax = plt.subplots(figsize=(6.4, 3))
    ax.bar(labels, [counts[k] for k in labels], color=ACCENT, alpha=0.85)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests")
    _style(ax, title)
    return fig


def _style(ax: plt.Axes, title: str, grid: bool = True) -> None:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if grid:
        ax.grid(axis="x", alpha=0.25)
    ax.figure.tight_layout()
