"""Experiments end to end: admin definition, sticky weighted assignment, feedback, results, concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from serve.experiments import Experiment, assign
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running

pytestmark = pytest.mark.slow
EXP = {"name": "warmth-ab", "arms": [{"name": "quarter", "model": "blend:0.25", "weight": 1},
                                      {"name": "sens", "model": "empathy-sensibility", "weight": 3}]}
MSG = [{"role": "user", "content": "I am nervous about my exam tomorrow."}]


def _admin(gateway: Running) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def _api(gateway: Running) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30)


@pytest.fixture(scope="module")
def experiment(gateway: Running) -> Experiment:
    with _admin(gateway) as admin:
        resp = admin.post("/v1/experiments", json=EXP)
        assert resp.status_code == 200, resp.text
        bad = admin.post("/v1/experiments", json={"name": "bad", "arms": [{"name": "a", "model": "gpt-9"}]})
        assert bad.status_code == 400 and "unknown model" in bad.json()["error"]["message"]
    return Experiment.model_validate(EXP)


async def _ask(client: AsyncOpenAI, sem: asyncio.Semaphore, user: str, model: str = "warmth-ab") -> object:
    async with sem:
        return await client.chat.completions.create(model=model, messages=MSG, max_tokens=1, user=user)


async def test_assignment_over_200_users(gateway: Running, experiment: Experiment) -> None:
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    sem = asyncio.Semaphore(16)
    users = [f"user-{i}" for i in range(200)]
    replies = await asyncio.gather(*(_ask(client, sem, u) for u in users))
    arms = [r.model_extra["empathy"]["arm"] for r in replies]
    assert arms == [assign(experiment, f"user:{u}").name for u in users]  # the stable hash, nothing else
    assert all(r.model_extra["empathy"]["source"] == "experiment" for r in replies)
    assert 0.65 <= Counter(arms)["sens"] / 200 <= 0.85  # weight 3:1, binomial sd 0.03
    again = await asyncio.gather(*(_ask(client, sem, u) for u in users[:20]))
    assert [r.model_extra["empathy"]["arm"] for r in again] == arms[:20]  # a user keeps their arm
    adapters = {r.model_extra["empathy"]["arm"]: r.model for r in replies}
    assert adapters == {"quarter": gateway.gateway.catalog.blends[0.25], "sens": "empathy-sensibility"}
    assert "warmth-ab" in {m.id for m in (await client.models.list()).data}
    await client.close()


def test_feedback_and_results(gateway: Running, experiment: Experiment) -> None:
    client = gateway.client()
    by_arm: dict[str, list[str]] = {}
    for i in range(12):
        r = client.chat.completions.create(model="warmth-ab", messages=MSG, max_tokens=1, user=f"fb-{i}")
        by_arm.setdefault(r.model_extra["empathy"]["arm"], []).append(r.id)
    assert set(by_arm) == {"quarter", "sens"}
    q, s = by_arm["quarter"][0], by_arm["sens"][0]
    with _api(gateway) as api:
        for body in ({"type": "rating", "completion_id": s, "value": 1},
                     {"type": "rating", "completion_id": q, "value": 0},
                     {"type": "rating", "completion_id": s, "value": 4, "scale": "likert"},
                     {"type": "pairwise", "completion_a": s, "completion_b": q, "outcome": "a"},
                     {"type": "pairwise", "completion_a": q, "completion_b": s, "outcome": "tie"}):
            assert api.post("/v1/feedback", json=body).status_code == 200
        unknown = {"type": "rating", "completion_id": "chatcmpl-nope", "value": 1}
        missing = api.post("/v1/feedback", json=unknown)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "completion_not_found"
        bad = api.post("/v1/feedback", json={"type": "rating", "completion_id": s, "value": 7})
        assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "param", "code"}
        listed = api.get("/v1/experiments").json()["data"]
        assert [e["name"] for e in listed] == ["warmth-ab"]
        assert listed[0]["arms"][1] == {"name": "sens", "model": "empathy-sensibility", "weight": 3.0}
        res = api.get("/v1/experiments/warmth-ab/results").json()
        assert api.get("/v1/experiments/nope/results").status_code == 404
    arms = {a["name"]: a for a in res["arms"]}
    assert arms["sens"]["thumbs"]["mean"] == 1.0 and arms["quarter"]["thumbs"]["mean"] == 0.0
    assert arms["sens"]["likert"]["n"] == 1 and res["votes"] == 2
    assert arms["sens"]["win_rate"]["win_rate"] == pytest.approx(0.75)
    assert arms["sens"]["bradley_terry"]["rating"] > arms["quarter"]["bradley_terry"]["rating"]
    assert arms["sens"]["assigned_users"] > 0 and arms["sens"]["completions"] > 0


def test_arena_asks_for_arms_by_name(gateway: Running, experiment: Experiment) -> None:
    """One user sees both arms (the arena): each reply is stored under its arm, the vote counts, and
    naming an arm is not an assignment."""
    client = gateway.client()
    with _api(gateway) as api:
        before = api.get("/v1/experiments/warmth-ab/results").json()
        ids = {}
        for arm in ("quarter", "sens"):
            r = client.chat.completions.create(model="warmth-ab", messages=MSG, max_tokens=1, user="arena-1",
                                               extra_body={"empathy": {"arm": arm}})
            assert r.model_extra["empathy"]["arm"] == arm
            ids[arm] = r.id
        vote = {"type": "pairwise", "completion_a": ids["quarter"], "completion_b": ids["sens"],
                "outcome": "a"}
        assert api.post("/v1/feedback", json=vote).status_code == 200
        after = api.get("/v1/experiments/warmth-ab/results").json()
        bad = api.post("/v1/chat/completions", json={"model": "warmth-ab", "messages": MSG,
                                                      "empathy": {"arm": "nope"}})
    assert after["votes"] == before["votes"] + 1
    assigned = {a["name"]: a["assigned_users"] for a in after["arms"]}
    assert assigned == {a["name"]: a["assigned_users"] for a in before["arms"]}
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "empathy"
    assert "quarter" in bad.json()["error"]["message"]


async def _chat_and_rate(client: AsyncOpenAI, api: httpx.AsyncClient, i: int, stream: bool) -> str:
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model="empathy", messages=MSG, max_tokens=2, user=f"c-{i}", stream=True)]
        cid = chunks[0].id
    else:
        cid = (await client.chat.completions.create(model="warmth-ab", messages=MSG, max_tokens=2,
                                                    user=f"c-{i}")).id
    resp = await api.post("/v1/feedback", json={"type": "rating", "completion_id": cid, "value": i % 2})
    assert resp.status_code == 200, resp.text
    return cid


async def test_50_concurrent_requests_with_feedback_lose_nothing(gateway: Running,
                                                                 experiment: Experiment) -> None:
    store = gateway.gateway.store
    before = await asyncio.to_thread(store.counts)
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0, timeout=300)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=300,
                                 headers={"authorization": f"Bearer {API_KEY}"}) as api:
        ids = await asyncio.gather(*(_chat_and_rate(client, api, i, stream=i % 2 == 0) for i in range(50)))
    await client.close()
    after = await asyncio.to_thread(store.counts)
    assert len(set(ids)) == 50
    assert after["serve_ratings"] - before["serve_ratings"] == 50
    assert after["serve_completions"] - before["serve_completions"] == 50
    assert not await asyncio.to_thread(store.missing_completions, ids)


def test_admin_only_endpoints(gateway: Running, experiment: Experiment, tiny_router: object) -> None:
    patch = {"active": False}
    with httpx.Client(base_url=gateway.url, timeout=30) as anon:
        assert anon.patch("/v1/experiments/warmth-ab", json=patch).status_code == 401
        assert anon.post("/admin/reload").status_code == 401
    with _api(gateway) as api:
        refused = api.patch("/v1/experiments/warmth-ab", json=patch)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_admin"
        assert api.post("/admin/reload").status_code == 403
    with _admin(gateway) as admin:
        assert admin.patch("/v1/experiments/warmth-ab", json=patch).json()["active"] is False
        with pytest.raises(openai.NotFoundError):  # an inactive experiment is not a model
            gateway.client().chat.completions.create(model="warmth-ab", messages=MSG, max_tokens=1)
        assert admin.patch("/v1/experiments/warmth-ab", json={"active": True}).status_code == 200
        reloaded = admin.post("/admin/reload").json()
        assert reloaded["grid"] == gateway.gateway.catalog.grid and reloaded["engine_restarted"] is False
        assert reloaded["router"] is False  # tiny_artifacts has no router artifact: default blend from now
    gateway.gateway.router = tiny_router
