"""Calibration plots of a distilled judge on its held-out part: predicted vs teacher S and R (scatter with
jitter, the teacher's scores are integers) and the confusion matrix of the selection buckets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selection.distill.metrics import BUCKETS, bucket_confusion

CRITERIA = ("sensibility", "rationality")


def plot_scatter(true: np.ndarray, pred: np.ndarray, column: int, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(true))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true[:, column] + jitter, pred[:, column], s=6, alpha=0.35)
    ax.plot([0, 10], [0, 10], color="grey", linewidth=1)
    ax.set(xlim=(-0.5, 10.5), ylim=(-0.5, 10.5), xlabel=f"teacher {CRITERIA[column]} (jittered)",
           ylabel=f"predicted {CRITERIA[column]}", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(matrix: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(int(value)), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    ax.set(xticks=range(len(BUCKETS)), yticks=range(len(BUCKETS)), xticklabels=BUCKETS, yticklabels=BUCKETS,
           xlabel="predicted bucket", ylabel="teacher bucket", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(true: np.ndarray, pred: np.ndarray, out_dir: Path, name: str,
                 thresholds: tuple[float, float] = (5.0, 5.0), confusion: np.ndarray | None = None
                 ) -> list[Path]:
    """Three PNGs in `out_dir`: scatter_sensibility.png, scatter_rationality.png, buckets_confusion.png
    (`confusion`: the judge's own bucket decisions, else the rule applied to its scores)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_scatter(true, pred, col, out_dir / f"scatter_{crit}.png", f"{name}: {crit} (held out)")
             for col, crit in enumerate(CRITERIA)]
    matrix = confusion if confusion is not None else bucket_confusion(pred, true, *thresholds)
    paths.append(plot_confusion(matrix, out_dir / "buckets_confusion.png", f"{name}: selection buckets"))
    return paths
