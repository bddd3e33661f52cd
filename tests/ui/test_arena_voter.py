"""The arena's voter id: every vote carries it (`user`), and the gateway's refusals (one vote per pair, the
daily cap) reach the person as the gateway's own message, with the vote buttons off.

The handler tests call the arena's real handlers against a real gateway (no engine: `down_gateway`) whose
completions are written through its own `Store`, as the proxy would have stored them.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import create_engine

from serve.api.feedback import utc_day
from serve.store import Completion, Store
from tests.ui.conftest import RunningGateway
from ui.arena import Battle, Contender, make_handlers, new_voter_id, vote_payload, voter_id
from ui.client import GatewayClient, describe_error


def test_the_vote_carries_the_voter() -> None:
    battle = Battle(Contender("base"), Contender("empathy"))
    battle.ids["left"][0], battle.ids["right"][0] = "l", "r"
    assert vote_payload(battle, "tie", "voter-1")["user"] == "voter-1"
    assert "user" not in vote_payload(battle, "tie")


def test_the_voter_id_is_kept_or_made() -> None:
    kept = new_voter_id()
    assert kept.startswith("voter-") and voter_id(kept) == kept
    assert all(voter_id(bad).startswith("voter-") for bad in (None, "", 7, {"x": 1}, "someone-else"))
    assert voter_id(None) != voter_id(None)


def test_a_gateway_error_shows_its_own_message() -> None:
    body = {"error": {"message": "this voter has cast 200 votes today", "type": "rate_limit_error",
                      "param": "user", "code": "vote_limit_reached"}}
    request = httpx.Request("POST", "http://gw/v1/feedback")
    response = httpx.Response(429, json=body, request=request)
    exc = httpx.HTTPStatusError("429", request=request, response=response)
    assert describe_error(exc, "http://gw/v1") == ("The gateway answered 429: this voter has cast 200 votes "
                                                   "today")
    plain = httpx.HTTPStatusError("418", request=request, response=httpx.Response(418, text="teapot",
                                                                                  request=request))
    assert describe_error(plain, "http://gw/v1").startswith("The gateway answered 418: teapot")


def _battle(store: Store, tag: str) -> Battle:
    battle = Battle(Contender("base"), Contender("empathy"))
    for side in ("left", "right"):
        cid = f"cmpl-{tag}-{side}"
        store.add_completion(Completion(cid, "base", "base", None, "direct", None, None, "s", 10.0, None,
                                        True))
        battle.ids[side][1] = cid
    return battle


def _buttons_on(outputs: tuple) -> list[bool]:
    return [update["interactive"] for update in outputs[4:8]]


@pytest.mark.slow
def test_refused_votes_show_the_gateway_message_and_turn_the_buttons_off(
        down_gateway: RunningGateway) -> None:
    store = Store(create_engine(f"sqlite:///{down_gateway.store_path}"))
    vote = make_handlers(GatewayClient(down_gateway.url, None))["vote"]
    tag = uuid.uuid4().hex[:8]
    first = vote("left", _battle(store, tag), None)
    voter = first[-1]
    assert voter.startswith("voter-") and first[3].startswith("Vote stored")
    assert vote("left", _battle(store, f"{tag}-2"), voter)[-1] == voter  # the same id on the next battle

    same_pair = vote("right", _battle(store, tag), voter)
    assert same_pair[3].startswith("⚠️ Vote not stored: The gateway answered 409: this voter already voted")
    assert _buttons_on(same_pair) == [False] * 4

    day = utc_day(time.time())[0]
    for k in range(198):  # 200 votes today, with the two above
        a, b = _battle(store, f"{tag}-fill-{k}").ids.values()
        store.add_pairwise(a[1], b[1], "tie", f"user:{voter}", 0, day)
    capped = vote("tie", _battle(store, f"{tag}-3"), voter)
    assert capped[3].startswith("⚠️ Vote not stored: The gateway answered 429: this voter has cast 200 votes")
    assert "00:00 UTC" in capped[3] and _buttons_on(capped) == [False] * 4
    other = vote("tie", _battle(store, f"{tag}-4"), None)  # a new browser is a new voter
    assert other[3].startswith("Vote stored") and other[-1] != voter
