"""Pairwise votes per voter (issue 14): one vote per voter and pair of completions (409), at most
EMPATHY_VOTES_PER_VOTER_PER_DAY per voter and UTC day (429 in the OpenAI shape, with Retry-After).

A real gateway over a real SQLite file, no engine (its upstream is a closed port): the completions a vote
needs are written through the gateway's own `Store`, as the proxy would have stored them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serve.api.feedback import utc_day
from serve.app import create_app
from serve.store import Completion, PairwiseRow, Store, VoteRefused
from tests.conftest import free_port
from tests.serve.conftest import API_KEY, Running, make_settings, serve_app

AUTH = {"authorization": f"Bearer {API_KEY}"}
CAP = 3


@pytest.fixture()
def gw(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "data").mkdir()
    settings = make_settings(tmp_path, tmp_path / "data", upstreams=[f"http://127.0.0.1:{free_port()}"],
                             votes_per_voter_per_day=CAP)
    app = create_app(settings)
    with serve_app(app) as url:
        yield Running(url, app)


def completions(store: Store, n: int) -> list[str]:
    ids = [f"cmpl-voter-{i}" for i in range(n)]
    for cid in ids:
        store.add_completion(Completion(cid, "base", "base", None, "direct", None, None, "s", 10.0, None,
                                        False))
    return ids


def vote(gw: Running, a: str, b: str, user: str | None, outcome: str = "a") -> httpx.Response:
    body: dict[str, Any] = {"type": "pairwise", "completion_a": a, "completion_b": b, "outcome": outcome}
    if user is not None:
        body["user"] = user
    return httpx.post(f"{gw.url}/v1/feedback", json=body, headers=AUTH, timeout=30)


def voters(store: Store) -> list[str | None]:
    with Session(store.engine) as s:
        return list(s.scalars(select(PairwiseRow.voter).order_by(PairwiseRow.id)))


def test_a_voter_gets_429_past_the_daily_cap_and_others_still_vote(gw: Running) -> None:
    ids = completions(gw.gateway.store, 6)
    for k in range(CAP):
        assert vote(gw, ids[k], ids[k + 1], "alice").status_code == 200
    refused = vote(gw, ids[4], ids[5], "alice")
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "vote_limit_reached"
    assert error["param"] == "user"
    assert f"cast {CAP} votes today" in error["message"]
    assert "EMPATHY_VOTES_PER_VOTER_PER_DAY" in error["message"]
    assert "00:00 UTC" in error["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 86401
    assert vote(gw, ids[4], ids[5], "bob").status_code == 200
    assert voters(gw.gateway.store) == ["user:alice"] * CAP + ["user:bob"]  # the refused vote is not stored


def test_one_vote_per_voter_and_pair_in_either_order(gw: Running) -> None:
    a, b, c = completions(gw.gateway.store, 3)
    assert vote(gw, a, b, "carol").status_code == 200
    again = vote(gw, b, a, "carol", outcome="tie")
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "duplicate_vote"
    assert "already voted on this pair" in again.json()["error"]["message"]
    assert vote(gw, a, b, "dave").status_code == 200
    assert vote(gw, a, c, "carol").status_code == 200
    assert voters(gw.gateway.store) == ["user:carol", "user:dave", "user:carol"]


def test_without_user_the_voter_is_the_client_address(gw: Running) -> None:
    ids = completions(gw.gateway.store, 6)
    for k in range(CAP):
        assert vote(gw, ids[k], ids[k + 1], None).status_code == 200
    assert vote(gw, ids[4], ids[5], None).status_code == 429
    assert voters(gw.gateway.store) == ["addr:127.0.0.1"] * CAP


def test_a_bad_user_field_is_400(gw: Running) -> None:
    a, b = completions(gw.gateway.store, 2)
    for user in ("", "x" * 201, 7):
        resp = vote(gw, a, b, user)  # type: ignore[arg-type]
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == "pairwise.user"


def test_concurrent_votes_of_one_voter_never_pass_the_cap(store: Store) -> None:
    """On SQLite and on PostgreSQL (whose READ COMMITTED would let concurrent counts miss each other
    without the store's lock on the voter)."""
    ids = completions(store, 21)

    def one(k: int) -> str:
        try:
            store.add_pairwise(ids[k], ids[k + 1], "a", "user:eve", CAP, utc_day(time.time())[0])
            return "stored"
        except VoteRefused as exc:
            return exc.reason

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert outcomes.count("stored") == CAP and outcomes.count("cap") == 20 - CAP
    assert voters(store) == ["user:eve"] * CAP


def test_votes_of_earlier_days_do_not_count(store: Store) -> None:
    ids = completions(store, 8)
    start = utc_day(time.time())[0]
    with Session(store.engine) as s, s.begin():
        for k in range(CAP):
            s.add(PairwiseRow(created=start - 60 * (k + 1), completion_a=ids[k], completion_b=ids[k + 1],
                              outcome="a", voter="user:frank"))
    for k in range(CAP):
        store.add_pairwise(ids[k + 4], ids[k + 5], "b", "user:frank", CAP, start)  # yesterday's 3 not counted
    with pytest.raises(VoteRefused) as refused:
        store.add_pairwise(ids[0], ids[7], "a", "user:frank", CAP, start)
    assert refused.value.reason == "cap" and refused.value.count == CAP


def test_utc_day() -> None:
    monday_1am = 20_000 * 86400 + 3600.0
    assert utc_day(monday_1am) == (20_000 * 86400, 23 * 3600)
    assert utc_day(20_000 * 86400.0) == (20_000 * 86400, 86400)
