"""Every completion's reply length (vLLM's `usage.completion_tokens`) is stored, for JSON replies and for
streams (the gateway asks vLLM for the usage event and drops it when the client did not ask), and feeds
the length-controlled Bradley-Terry of experiment results. Real gateway, real vLLM, real SQLite."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.store import CompletionRow
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running

pytestmark = pytest.mark.slow
AUTH = {"authorization": f"Bearer {API_KEY}"}
MSG = [{"role": "user", "content": "I am nervous about my exam tomorrow."}]


def stored_tokens(gateway: Running, completion_id: str) -> int | None:
    gateway.rows_written()
    with Session(gateway.gateway.store.engine) as s:
        return s.scalar(select(CompletionRow.completion_tokens).where(CompletionRow.id == completion_id))


def sse_events(text: str) -> list[Any]:
    return [json.loads(e[6:]) for e in text.split("\n\n") if e.startswith("data: ") and e != "data: [DONE]"]


def post(gateway: Running, path: str, body: dict[str, Any]) -> httpx.Response:
    resp = httpx.post(f"{gateway.url}{path}", json=body, headers=AUTH, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_reply_tokens_are_stored_for_json_and_streams(gateway: Running, path: str) -> None:
    body = {"model": "base", "max_tokens": 5, "ignore_eos": True,
            **({"messages": MSG} if "chat" in path else {"prompt": "Hello, my name is"})}
    reply = post(gateway, path, body).json()
    assert reply["usage"]["completion_tokens"] == 5 and stored_tokens(gateway, reply["id"]) == 5

    hidden = sse_events(post(gateway, path, {**body, "stream": True}).text)
    assert all(e["choices"] and "usage" not in e for e in hidden)  # nothing the client did not ask for
    assert hidden[0]["empathy"]["adapter"] == "base"
    assert stored_tokens(gateway, hidden[0]["id"]) == 5

    asked = sse_events(post(gateway, path, {**body, "stream": True, "max_tokens": 4,
                                            "stream_options": {"include_usage": True}}).text)
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] == 4  # kept for the client
    assert stored_tokens(gateway, asked[0]["id"]) == 4


def _reply(gateway: Running, name: str, arm: str, tokens: int, stream: bool) -> str:
    body = {"model": name, "messages": MSG, "max_tokens": tokens, "ignore_eos": True, "stream": stream,
            "user": f"len-{uuid.uuid4().hex[:6]}", "empathy": {"arm": arm}}
    resp = post(gateway, "/v1/chat/completions", body)
    return sse_events(resp.text)[0]["id"] if stream else resp.json()["id"]


def test_results_show_length_controlled_ratings_beside_the_plain_ones(gateway: Running) -> None:
    name = f"len-{uuid.uuid4().hex[:8]}"
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    arms = [{"name": "long", "model": "empathy-sensibility"},
            {"name": "short", "model": "empathy-rationality"}]
    assert httpx.post(f"{gateway.url}/v1/experiments", json={"name": name, "arms": arms},
                      headers=admin).status_code == 200
    try:
        voter = f"voter-{uuid.uuid4().hex}"
        for i in range(6):
            long = _reply(gateway, name, "long", 8, stream=i % 2 == 0)
            short = _reply(gateway, name, "short", 3, stream=True)
            vote = {"type": "pairwise", "completion_a": long, "completion_b": short,
                    "outcome": "a" if i < 4 else "b", "user": voter}
            assert httpx.post(f"{gateway.url}/v1/feedback", json=vote, headers=AUTH).status_code == 200
        res = httpx.get(f"{gateway.url}/v1/experiments/{name}/results", headers=AUTH, timeout=60).json()
        json.dumps(res, allow_nan=False)
        by_arm = {a["name"]: a for a in res["arms"]}
        assert by_arm["long"]["reply_tokens_mean"] == 8 and by_arm["short"]["reply_tokens_mean"] == 3
        for arm in by_arm.values():
            lc = arm["bradley_terry_lc"]
            assert lc["low"] <= lc["rating"] <= lc["high"] and math.isfinite(lc["rating"])
            assert arm["bradley_terry"]["rating"] != lc["rating"]
        assert res["length_control"]["votes"] == 6 and res["length_control"]["length_coef"] is not None
    finally:  # an active experiment would change the model list and arena pairs for later tests
        httpx.patch(f"{gateway.url}/v1/experiments/{name}", json={"active": False}, headers=admin)
