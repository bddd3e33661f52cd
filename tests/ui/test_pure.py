"""Pure parts of the UI: route parsing, captions, history conversion, pair choice, dashboard extraction."""

from __future__ import annotations

import random

import openai
import pytest

from ui.arena import Battle, Contender, choose_pair, fallback_models, vote_payload
from ui.client import RESTARTING, Route, describe_error, v1_url
from ui.dashboard import arm_rows, blend_counts, bt_ratings, win_matrix
from ui.experts import BLEND, model_choices, request_for
from ui.format import arm_request, blend_label, caption, to_openai


def test_route_from_header_and_body() -> None:
    route = Route.from_header("blend=0.75; adapter=blend-0.75-ab12cd34; source=router")
    assert route == Route(blend=0.75, adapter="blend-0.75-ab12cd34", source="router")
    assert Route.from_header("blend=none; adapter=base; source=fixed").blend is None
    body = Route.from_body({"blend": 0.25, "adapter": "x", "source": "override", "probs": [0.5, 0.5]})
    assert body is not None and body.blend == 0.25 and body.probs == [0.5, 0.5]


def test_caption_and_history_round_trip() -> None:
    assert blend_label(Route(blend=0.75)) == "75% sensibility / 25% rationality"
    shown = "Hello there." + caption(Route(blend=0.75, source="router"))
    history = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": shown},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": f"⚠️ {RESTARTING}"},
        {"role": "user", "content": "third"},
    ]
    assert to_openai(history) == [{"role": "user", "content": "hi"},
                                  {"role": "assistant", "content": "Hello there."},
                                  {"role": "user", "content": "third"}]


def test_errors_become_sentences() -> None:
    import httpx

    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(503, request=request, json={"error": {"message": "engine restarting"}})
    exc = openai.InternalServerError("engine restarting", response=response, body=response.json())
    assert describe_error(exc, "http://x/v1") == RESTARTING
    assert "cannot be reached" in describe_error(openai.APIConnectionError(request=request), "http://x/v1")
    assert v1_url("http://h:1/") == "http://h:1/v1" and v1_url("http://h:1/v1") == "http://h:1/v1"


def test_pair_from_active_experiment_and_fallback() -> None:
    experiments = [{"name": "old", "active": False, "arms": [{"name": "x", "model": "base"}] * 2},
                   {"name": "exp", "active": True, "arms": [
                       {"name": "sens", "model": "empathy-sensibility", "weight": 1},
                       {"name": "mix", "model": "blend:0.5", "weight": 1},
                       {"name": "routed", "model": "empathy", "weight": 2}]}]
    for seed in range(20):
        battle = choose_pair(experiments, [], random.Random(seed))
        assert battle.experiment == "exp" and battle.left.arm != battle.right.arm
    fallback = choose_pair([], ["base", "empathy", "empathy-sensibility"], random.Random(0))
    assert fallback.experiment is None and fallback.left.model != fallback.right.model
    assert "empathy-full" not in fallback_models(["x"])
    assert "empathy-full" in fallback_models(["base", "empathy-full"])


def test_vote_payload_and_arm_requests() -> None:
    battle = Battle(Contender("base"), Contender("empathy"))
    battle.ids["left"].update({1: "a1", 3: "a2"})
    battle.ids["right"].update({1: "b1", 3: "b2"})
    assert vote_payload(battle, "right") == {"type": "pairwise", "completion_a": "a2", "completion_b": "b2",
                                             "outcome": "b"}
    assert arm_request("blend:0.75") == ("empathy", {"empathy": {"blend": 0.75}})
    assert arm_request("base") == ("base", None)
    assert arm_request("blend:0.75", "exp", "warm") == ("exp", {"empathy": {"arm": "warm"}})
    assert request_for(BLEND, 0.3) == ("empathy", {"empathy": {"blend": 0.3}})
    assert model_choices(["base", "empathy", "empathy-sensibility", "exp1"]) == [
        "base", "empathy-sensibility", BLEND, "empathy"]


@pytest.fixture
def results() -> dict:
    arm = {"weight": 1.0, "assigned_users": 2, "completions": 5,
           "thumbs": {"n": 4, "mean": 0.75, "low": 0.2, "high": 1.0},
           "win_rate": {"games": 3.0, "win_rate": 0.5, "low": 0.1, "high": 0.9},
           "bradley_terry": {"rating": 1010.0, "low": 900.0, "high": 1100.0},
           "latency_ms_p50": 812.0, "ttft_ms_p50": None}
    return {"experiment": "exp", "votes": 3,
            "arms": [{"name": "a", "model": "base", **arm}, {"name": "b", "model": "empathy", **arm}],
            "pairwise": [{"a": "a", "b": "b", "games": 3.0, "a_win_rate": 2 / 3}]}


def test_dashboard_extraction(results: dict) -> None:
    rows = arm_rows(results)
    assert rows[0][:6] == ["a", "base", "1", "2", "5", "4"] and rows[0][6].startswith("75%")
    assert rows[0][-2:] == ["812", "–"]
    assert set(bt_ratings(results)) == {"a", "b"}
    players, matrix = win_matrix(results)
    assert players == ["a", "b"] and matrix[0][1] == pytest.approx(2 / 3)
    assert matrix[1][0] == pytest.approx(1 / 3)
    assert arm_rows({}) == [] and bt_ratings({}) == {} and win_matrix({}) == ([], [])


def test_blend_histogram_from_prometheus() -> None:
    text = "\n".join([
        "# HELP empathy_router_weight Blend weight.", "# TYPE empathy_router_weight histogram",
        'empathy_router_weight_bucket{le="0.0",source="router"} 1.0',
        'empathy_router_weight_bucket{le="0.5",source="router"} 3.0',
        'empathy_router_weight_bucket{le="1.0",source="router"} 4.0',
        'empathy_router_weight_bucket{le="+Inf",source="router"} 4.0',
        'empathy_router_weight_count{source="router"} 4.0',
        'empathy_router_weight_sum{source="router"} 2.0', ""])
    assert blend_counts(text) == {"0": 1.0, "0.5": 2.0, "1": 1.0}
    assert blend_counts("") == {}
