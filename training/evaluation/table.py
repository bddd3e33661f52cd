"""`empathy eval table`: every run with a 95% bootstrap interval in each cell, and paired differences.

The metrics are recomputed from each run's stored replies and references (so older runs get the paper's exact
computation too); judged S and R come from the per-reply verdicts a run stored (runs judged before verdicts
were stored show their mean without an interval).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from training.evaluation.bootstrap import (
    Interval,
    RunStats,
    bootstrap_intervals,
    paired_difference,
    run_stats,
)

COLUMNS = [("bleu1", "BLEU-1"), ("bleu2", "BLEU-2"), ("bleu3", "BLEU-3"), ("bleu4", "BLEU-4"),
           ("rouge1", "R-1"), ("rouge2", "R-2"), ("rougeL", "R-L"), ("dist1", "Dist-1"), ("dist2", "Dist-2"),
           ("f1", "F1"), ("loop", "Loop%"), ("avg_len", "Len"), ("judge_s", "S"), ("judge_r", "R")]
UNSCALED = {"avg_len", "judge_s", "judge_r"}  # shown as is; the rest x100 like the paper's table


def run_verdicts(run: dict[str, Any]) -> list[tuple[float, float] | None] | None:
    """Each reply's judged (S, R) when the run stored them, else None."""
    outputs = run.get("outputs", [])
    if not any("judge_s" in o for o in outputs):
        return None
    return [(float(o["judge_s"]), float(o["judge_r"])) if "judge_s" in o else None for o in outputs]


def stats_of(run: dict[str, Any], ids: Sequence[str] | None = None) -> RunStats:
    """The run's per-sample statistics, over `ids` in that order when given."""
    outputs = run.get("outputs") or []
    if not outputs:
        raise ValueError(f"run {run.get('file')} has no stored outputs; run `empathy eval` for it again.")
    verdicts = run_verdicts(run)
    index = {o["id"]: i for i, o in enumerate(outputs)}
    order = [index[i] for i in ids] if ids is not None else list(range(len(outputs)))
    return run_stats([outputs[i]["reply"] for i in order], [outputs[i]["reference"] for i in order],
                     [verdicts[i] for i in order] if verdicts is not None else None)


def format_cell(key: str, cell: Interval | None, signed: bool = False) -> str:
    if cell is None or math.isnan(cell.value):
        return "-"
    scale = 1.0 if key in UNSCALED else 100.0
    sign = "+" if signed else ""
    text = f"{cell.value * scale:{sign}.2f}"
    if not math.isnan(cell.low):
        text += f" [{cell.low * scale:.2f}, {cell.high * scale:.2f}]"
    return text + (" *" if signed and cell.excludes_zero() else "")


def run_cells(run: dict[str, Any], resamples: int, seed: int) -> dict[str, Interval]:
    cells = bootstrap_intervals(stats_of(run), resamples=resamples, seed=seed)
    stored = run.get("metrics", {})
    for key in ("judge_s", "judge_r"):  # judged before per-reply verdicts were stored: the mean alone
        if math.isnan(cells[key].value) and stored.get(key) is not None:
            cells[key] = Interval(float(stored[key]), math.nan, math.nan)
    return cells


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(row) + " |" for row in rows]]


def render_table(runs: Sequence[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> str:
    """All runs side by side, like the paper's table (x100 except Len, S and R), each cell
    `estimate [95% bootstrap interval]` over the run's test samples."""
    header = ["Model", "Split", "N", *[title for _, title in COLUMNS], "Gen s"]
    rows = []
    for run in runs:
        cells = run_cells(run, resamples, seed)
        rows.append([str(run.get("model")), str(run.get("split")), str(run.get("n")),
                     *[format_cell(key, cells.get(key)) for key, _ in COLUMNS],
                     str(run.get("generation_seconds", "-"))])
    return "\n".join(_markdown(header, rows))


Pair = tuple[dict[str, Any], dict[str, Any], list[str]]


def find_pair(runs: Sequence[dict[str, Any]], a: str, b: str) -> Pair:
    """The runs of models `a` and `b` that share the most samples, and those samples' ids (in a's order)."""
    best: Pair | None = None
    for run_a in (r for r in runs if r.get("model") == a):
        for run_b in (r for r in runs if r.get("model") == b and r.get("split") == run_a.get("split")):
            ids_b = {o["id"] for o in run_b.get("outputs", [])}
            shared = [o["id"] for o in run_a.get("outputs", []) if o["id"] in ids_b]
            if shared and (best is None or len(shared) > len(best[2])):
                best = (run_a, run_b, shared)
    if best is None:
        models = sorted({str(r.get("model")) for r in runs})
        raise ValueError(f"no runs of {a!r} and {b!r} on common samples (runs: {', '.join(models)}); "
                         f"evaluate both with `empathy eval --model {a},{b}`.")
    return best


_PAIR = re.compile(r"^(blend:[^:]+|[^:]+):(blend:[^:]+|[^:]+)$")


def parse_pair(spec: str) -> tuple[str, str]:
    """`sensibility:full` -> ("sensibility", "full"); blends keep their colon (`blend:0.5:full`)."""
    match = _PAIR.match(spec.strip())
    if not match:
        raise ValueError(f"--compare {spec!r}: give two models as A:B, e.g. sensibility:full")
    return match.group(1), match.group(2)


def render_comparisons(runs: Sequence[dict[str, Any]], pairs: Sequence[tuple[str, str]],
                       resamples: int = 1000, seed: int = 0) -> str:
    """One row per pair: metric of A minus metric of B on their common samples, with a paired 95%
    bootstrap interval; `*` marks an interval that excludes 0."""
    header = ["A - B", "Split", "N", *[title for _, title in COLUMNS]]
    rows = []
    for a, b in pairs:
        run_a, run_b, ids = find_pair(runs, a, b)
        diff = paired_difference(stats_of(run_a, ids), stats_of(run_b, ids), resamples=resamples, seed=seed)
        rows.append([f"{a} - {b}", str(run_a.get("split")), str(len(ids)),
                     *[format_cell(key, diff.get(key), signed=True) for key, _ in COLUMNS]])
    return "\n".join(_markdown(header, rows))
