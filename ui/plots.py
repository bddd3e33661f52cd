"""Matplotlib figures of experiment results: pure functions of plain data (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

ACCENT = "#e8735a"
MUTED = "#8a8f98"
LENGTH_COLOR = "#4a7fb5"


def _empty(message: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color=MUTED, fontsize=11)
    return fig


def strengths_plot(ratings: Mapping[str, Mapping[str, float]], title: str = "Bradley-Terry strength",
                   controlled: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """Horizontal dots with 95% intervals, strongest on top (Elo-like scale); with `controlled`, the
    length-controlled ratings of the same arms just below each (a second colour)."""
    rows = sorted(((k, v) for k, v in ratings.items() if v.get("rating") is not None),
                  key=lambda kv: kv[1]["rating"])
    if not rows:
        return _empty("no pairwise votes yet")
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(rows) + 1.3))
    series = [(ratings, ACCENT, 0.0, "plain")]
    if controlled:
        series.append((controlled, LENGTH_COLOR, -0.28, "length-controlled"))
    for source, color, shift, label in series:
        _dots(ax, [(y + shift, source.get(name)) for y, (name, _) in enumerate(rows)], color, label)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.axvline(1000, color=MUTED, linewidth=0.8, linestyle="--")
    ax.set_xlabel("rating (1000 = average; 400 points = 10x odds)")
    if controlled:
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    _style(ax, title)
    return fig


def _dots(ax: plt.Axes, rows: Sequence[tuple[float, Mapping[str, float] | None]], color: str,
          label: str) -> None:
    """A dot with its interval bar at each height that has a rating; `label` once, for the legend."""
    for y, r in rows:
        if not r or r.get("rating") is None:
            continue
        low, high = r.get("low", r["rating"]), r.get("high", r["rating"])
        ax.plot([low, high], [y, y], color=color, alpha=0.45, linewidth=6, solid_capstyle="round")
        ax.plot([r["rating"]], [y], "o", color=color, markersize=9, label=label)
        label = "_nolegend_"


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


METRIC_LABELS = {"win_rate": "win rate of {a} over {b}", "thumbs": "thumbs-up share {a} - {b}",
                 "likert": "likert mean {a} - {b}"}


def _none_to_nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _sequence_panel(ax: plt.Axes, pair: Mapping[str, Any]) -> None:
    trace = pair["trace"]
    n = trace["n"]
    ax.fill_between(n, _none_to_nan(trace["low"]), _none_to_nan(trace["high"]), color=ACCENT, alpha=0.25,
                    linewidth=0, label="confidence sequence")
    ax.plot(n, _none_to_nan(trace["estimate"]), color=ACCENT, linewidth=1.6, label="estimate")
    ax.axhline(pair.get("null", 0.0), color=MUTED, linewidth=0.9, linestyle="--")
    ax.set_xlabel("observations")
    label = METRIC_LABELS.get(str(pair.get("metric")), "{a} vs {b}").format(a=pair.get("a"), b=pair.get("b"))
    decision = str(pair.get("decision", "not yet"))
    _style(ax, f"{label}: {decision}")
    ax.title.set_color(ACCENT if decision != "not yet" else "black")


def sequences_plot(pairs: Sequence[Mapping[str, Any]], srm_mismatch: bool = False,
                   max_panels: int = 6) -> Figure:
    """Per pair and metric the anytime-valid confidence sequence over observations (band), the estimate
    (line) and "no difference" (dashed), titled with the decision; an SRM warning over everything."""
    rows = [p for p in pairs if isinstance(p.get("trace"), Mapping) and p["trace"].get("n")][:max_panels]
    if not rows:
        return _empty("no ratings or votes between arms yet")
    fig, axes = plt.subplots(len(rows), 1, figsize=(6.4, 2.3 * len(rows) + 0.6), squeeze=False)
    for ax, pair in zip(axes[:, 0], rows, strict=True):
        _sequence_panel(ax, pair)
    if srm_mismatch:
        fig.suptitle("Sample-ratio mismatch: traffic does not split as configured", color="#c0392b",
                     fontsize=11, x=0.98, ha="right")  # the left corner carries Gradio's label
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight() if srm_mismatch else 1))
    return fig


def _style(ax: plt.Axes, title: str, grid: bool = True) -> None:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if grid:
        ax.grid(axis="x", alpha=0.25)
    cast(Figure, ax.figure).tight_layout()
