"""The dashboard's length-controlled Bradley-Terry: table columns, the summary line and the strengths plot
(pure: a results dict in, rows, text and a figure out)."""

from __future__ import annotations

from typing import Any

import pytest

from ui.dashboard import TABLE_HEADERS, arm_rows, bt_ratings, length_line, summary
from ui.plots import strengths_plot


@pytest.fixture
def results() -> dict[str, Any]:
    def arm(name: str, plain: float, controlled: float, tokens: float) -> dict[str, Any]:
        return {"name": name, "model": "base", "weight": 1.0, "win_rate": {"games": 10.0, "win_rate": 0.5},
                "bradley_terry": {"rating": plain, "low": plain - 30, "high": plain + 30},
                "bradley_terry_lc": {"rating": controlled, "low": controlled - 40, "high": controlled + 40},
                "reply_tokens_mean": tokens, "latency_ms_p50": 800.0, "ttft_ms_p50": 90.0}
    return {"experiment": "len", "votes": 10,
            "arms": [arm("long", 1060, 990, 118.4), arm("short", 940, 1010, 42)],
            "length_control": {"votes": 10, "length_coef": 1.4, "length_coef_se": 0.2,
                               "length_effect": "longer replies win more often"}}


def test_table_has_plain_and_length_controlled_elo_and_reply_tokens(results: dict[str, Any]) -> None:
    rows = {row[0]: dict(zip(TABLE_HEADERS, row, strict=True)) for row in arm_rows(results)}
    assert rows["long"]["Elo (95% CI)"] == "1060 (1030–1090)"
    assert rows["long"]["Elo, length-controlled (95% CI)"] == "990 (950–1030)"
    assert rows["long"]["reply tokens"] == "118" and rows["short"]["reply tokens"] == "42"
    assert rows["short"]["latency p50 ms"] == "800"
    bare = arm_rows({"arms": [{"name": "x"}]})[0]
    assert bare[TABLE_HEADERS.index("Elo, length-controlled (95% CI)")] == "–"


def test_summary_says_what_length_control_found(results: dict[str, Any]) -> None:
    line = length_line(results)
    assert line == ("Reply length (10 votes): longer replies win more often (coefficient +1.40 ± 0.39 per SD "
                    "of the length difference); Elo at equal length: long 990, short 1010.")
    assert line in summary("len", results)
    assert length_line({"length_control": {"votes": 0, "length_coef": None}}) == "" == length_line({})


def test_the_strengths_plot_draws_both_ratings(results: dict[str, Any]) -> None:
    fig = strengths_plot(bt_ratings(results), controlled=bt_ratings(results, "bradley_terry_lc"))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "length-controlled"]
    assert len(ax.lines) == 2 * 2 * 2 + 1  # per series and arm a bar and a dot; the 1000 line
    assert strengths_plot(bt_ratings(results)).axes[0].get_legend() is None
