"""The dashboard's confidence-sequence plot, decisions and sample-ratio line, from results the gateway's own
results code computes on a live-like experiment (three arms, thumbs and votes in arrival order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from serve.experiments import Arm, Experiment
from serve.results import experiment_results
from ui.dashboard import decision_lines, position_line, srm_line, summary
from ui.plots import sequences_plot


def _live_results(assigned: dict[str, int]) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    exp = Experiment(name="live", arms=[Arm(name=n, model="base") for n in ("warm", "cool", "plain")])
    share = {"warm": 0.72, "cool": 0.55, "plain": 0.55}
    arm_of = {f"c{i}": ("warm", "cool", "plain")[i % 3] for i in range(1200)}
    ratings = [(cid, float(rng.random() < share[arm]), "thumbs") for cid, arm in arm_of.items()]
    ids = {a: [c for c, x in arm_of.items() if x == a] for a in share}
    votes = []
    for k in range(900):
        a, b = (("warm", "cool"), ("warm", "plain"), ("cool", "plain"))[k % 3]
        p = 0.7 if a == "warm" else 0.5
        votes.append((ids[a][k % 400], ids[b][k % 400], "a" if rng.random() < p else "b"))
    data = {"arm_of": arm_of, "ratings": ratings, "votes": votes, "assigned": assigned,
            "latency": [(a, 100.0, 20.0) for a in arm_of.values()]}
    return experiment_results(exp, data, bootstrap_rounds=5)


def test_sequences_plot_shows_each_pair_with_its_decision(artifacts_dir: Path) -> None:
    results = _live_results({"warm": 700, "cool": 400, "plain": 400})
    fig = sequences_plot(results["pairs"], results["srm"]["mismatch"])
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert len(titles) == 6  # three pairs x (win rate, thumbs)
    assert "win rate of warm over cool: warm ahead" in titles
    assert any(t.startswith("win rate of cool over plain") and t.endswith("not yet") for t in titles)
    assert fig._suptitle is not None and "mismatch" in fig._suptitle.get_text()
    out = artifacts_dir / "ui" / "dashboard_sequences.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"confidence sequences plot: {out}")
    assert out.stat().st_size > 10_000


def test_summary_carries_srm_flag_and_decisions() -> None:
    skewed = _live_results({"warm": 700, "cool": 400, "plain": 400})
    assert srm_line(skewed).startswith("⚠️ **Sample-ratio mismatch**")
    fair = _live_results({"warm": 405, "cool": 398, "plain": 397})
    assert srm_line(fair).startswith("Sample ratio OK")
    assert "mismatch" not in (sequences_plot(fair["pairs"], fair["srm"]["mismatch"])._suptitle or "")
    lines = decision_lines(fair)
    assert any("warm vs cool · win_rate: **warm ahead**" in line for line in lines)
    text = summary("live", fair)
    assert text.startswith("### live (active)") and "Sample ratio OK" in text
    assert summary("old", {"arms": []}) == "### old (active)\nArms: – · pairwise votes: **0**"
    assert position_line(fair).startswith("Left answer wins") and "Left answer wins" in text
    assert srm_line({}) == "" and decision_lines({}) == [] and position_line({}) == ""
    assert sequences_plot([]).axes[0].texts[0].get_text() == "no ratings or votes between arms yet"
