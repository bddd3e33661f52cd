"""Bootstrap intervals and paired differences: the vectorized resample metrics equal the metrics of the
resampled corpus computed directly, intervals behave, and the table/CLI show them."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from training.evaluation.bootstrap import (
    Interval,
    bootstrap_intervals,
    distinct_metrics,
    half_masks,
    paired_difference,
    point_estimates,
    resample_weights,
    run_stats,
    sum_metrics,
)
from training.evaluation.metrics import all_metrics

WORDS = ["i", "am", "so", "sorry", "to", "hear", "that", ".", "how", "are", "you", "doing", "?", "that", "is",
         "great", "news", "!", "what", "happened", "next", ",", "do", "want", "talk", "about", "it", "my",
         "friend"]


def corpus(seed: int, n: int) -> tuple[list[str], list[str]]:
    """Random replies and references over a small vocabulary (plenty of n-gram overlap), every ninth reply
    a loop."""
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))

    loop = "so sorry for you . " * 3
    return [loop if i % 9 == 4 else text() for i in range(n)], [text() or "ok" for _ in range(n)]


def test_resampled_metrics_equal_the_metrics_of_the_resampled_corpus() -> None:
    hyps, refs = corpus(1, 40)
    stats = run_stats(hyps, refs)
    weights = resample_weights(40, 5, np.random.default_rng(7))
    masks = half_masks(40, 5, np.random.default_rng(8))
    fast = {**sum_metrics(stats, weights), **distinct_metrics(stats, masks)}
    for b in range(5):
        drawn = [i for i in range(40) for _ in range(int(weights[b, i]))]
        direct = all_metrics([hyps[i] for i in drawn], [refs[i] for i in drawn])
        for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "f1", "loop",
                    "avg_len"):
            assert fast[key][b] == pytest.approx(direct[key], rel=1e-9, abs=1e-12), key
        half = [i for i in range(40) if masks[b, i]]
        direct_half = all_metrics([hyps[i] for i in half], [refs[i] for i in half])
        for key in ("dist1", "dist2"):
            assert fast[key][b] == pytest.approx(direct_half[key], rel=1e-12), key
    point = point_estimates(stats)
    assert math.isnan(point.pop("judge_s")) and math.isnan(point.pop("judge_r"))
    assert point == pytest.approx(all_metrics(hyps, refs), rel=1e-9)


def test_half_masks_pick_half_without_replacement() -> None:
    masks = half_masks(11, 50, np.random.default_rng(0))
    assert masks.shape == (50, 11) and (masks.sum(axis=1) == 5).all()
    weights = resample_weights(11, 50, np.random.default_rng(0))
    assert (weights.sum(axis=1) == 11).all()


def test_intervals_contain_the_estimate_and_repeat_with_the_seed() -> None:
    hyps, refs = corpus(2, 80)
    judge = [(float(i % 10), float(9 - i % 10)) if i % 7 else None for i in range(80)]
    stats = run_stats(hyps, refs, judge)
    cells = bootstrap_intervals(stats, resamples=300, seed=5)
    for key, cell in cells.items():
        assert cell.low <= cell.value <= cell.high, key
        assert cell.high > cell.low, key
    judged = [v for v in judge if v is not None]
    assert cells["judge_s"].value == pytest.approx(sum(v[0] for v in judged) / len(judged))
    assert bootstrap_intervals(stats, resamples=300, seed=5) == cells
    wider = bootstrap_intervals(run_stats(hyps[:20], refs[:20]), resamples=300, seed=5)
    assert wider["bleu1"].high - wider["bleu1"].low > cells["bleu1"].high - cells["bleu1"].low


def test_a_run_without_verdicts_has_no_judge_interval() -> None:
    cells = bootstrap_intervals(run_stats(*corpus(3, 10)), resamples=50)
    assert math.isnan(cells["judge_s"].value) and math.isnan(cells["judge_s"].low)


def test_paired_difference() -> None:
    hyps, refs = corpus(4, 60)
    same = run_stats(hyps, refs, [(5.0, 5.0)] * 60)
    zero = paired_difference(same, same, resamples=200)
    assert all(cell == Interval(0.0, 0.0, 0.0) for cell in zero.values())
    warmer = run_stats(refs, refs, [(7.0 + (i % 3), 4.0) for i in range(60)])  # copies the references
    diff = paired_difference(warmer, same, resamples=200)
    assert diff["judge_s"].excludes_zero() and diff["judge_s"].value == pytest.approx(3.0)
    assert diff["judge_r"].high < 0
    assert diff["bleu4"].low > 0 and diff["f1"].low > 0
    with pytest.raises(ValueError, match="same samples"):
        paired_difference(same, run_stats(hyps[:5], refs[:5]))


def write_run(folder: Path, model: str, hyps: list[str], refs: list[str], judge: list[float] | None) -> None:
    outputs = [{"id": f"s{i}", "reply": h, "reference": r, "model": model,
                **({"judge_s": judge[i], "judge_r": 10 - judge[i]} if judge else {})}
               for i, (h, r) in enumerate(zip(hyps, refs, strict=True))]
    body = {"model": model, "split": "test", "n": len(hyps), "metrics": {}, "generation_seconds": 1.0,
            "outputs": outputs}
    (folder / f"{model.replace(':', '_')}-test-n{len(hyps)}.json").write_text(json.dumps(body))


def test_eval_table_cli_shows_intervals_and_paired_differences(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from training import eval_cli
    from training.evaluation.table import parse_pair

    hyps, refs = corpus(5, 30)
    (tmp_path / "eval").mkdir()
    write_run(tmp_path / "eval", "sensibility", refs, refs, [8.0 + i % 2 for i in range(30)])
    write_run(tmp_path / "eval", "rationality", hyps, refs, [4.0 + i % 3 for i in range(30)])
    write_run(tmp_path / "eval", "blend:0.5", hyps, refs, None)
    args = ["table", "--data-dir", str(tmp_path), "--resamples", "200"]
    compare = ["--compare", "sensibility:rationality", "--compare", "blend:0.5:sensibility"]
    assert eval_cli.main([*args, *compare]) == 0
    out = capsys.readouterr().out
    assert "| sensibility | test | 30 | 100.00 [100.00, 100.00] |" in out
    assert "Loop%" in out and "| blend:0.5 | test | 30 |" in out
    row = next(line for line in out.splitlines() if line.startswith("| sensibility - rationality |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    s_cell, r_cell = cells[-2], cells[-1]
    assert s_cell.startswith("+") and s_cell.endswith("*") and r_cell.startswith("-") and r_cell.endswith("*")
    assert "| blend:0.5 - sensibility | test | 30 |" in out
    assert eval_cli.main([*args, "--compare", "sensibility:full"]) == 2
    assert "no runs of 'sensibility' and 'full'" in capsys.readouterr().out
    assert parse_pair("blend:0.25:blend:0.75") == ("blend:0.25", "blend:0.75")
    with pytest.raises(ValueError, match="A:B"):
        parse_pair("sensibility")
