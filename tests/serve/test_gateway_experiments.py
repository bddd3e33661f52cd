"""Experiments end to end: admin definition, sticky weighted assignment, feedback, results, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from serve.app import create_app
from serve.experiments import Experiment, assign
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running, make_settings, serve_app

pytestmark = pytest.mark.slow
EXP = {"name": "warmth-ab", "arms": [{"name": "quarter", "model": "blend:0.25", "weight": 1},
                                      {"name": "sens", "model": "empathy-sensibility", "weight": 3}]}
MSG = [{"role": "user", "content": "I am nervous about my exam tomorrow."}]


def _admin(gateway: Running) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def _api(gateway: Running) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=30)


@pytest.fixture
def experiment(gateway: Running) -> Experiment:
    """A new experiment for each test (its own name, so its counts are its own traffic only)."""
    exp = Experiment.model_validate({**EXP, "name": f"warmth-{uuid.uuid4().hex[:8]}"})
    with _admin(gateway) as admin:
        resp = admin.post("/v1/experiments", json=exp.model_dump(exclude={"created"}))
        assert resp.status_code == 200, resp.text
    return exp


def test_unknown_arm_model_is_refused(gateway: Running) -> None:
    with _admin(gateway) as admin:
        bad = admin.post("/v1/experiments", json={"name": "bad", "arms": [{"name": "a", "model": "gpt-9"}]})
    assert bad.status_code == 400 and "unknown model" in bad.json()["error"]["message"]


async def _ask(client: AsyncOpenAI, sem: asyncio.Semaphore, user: str, model: str) -> object:
    async with sem:
        return await client.chat.completions.create(model=model, messages=MSG, max_tokens=1, user=user)


async def test_assignment_over_200_users(gateway: Running, experiment: Experiment) -> None:
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
    sem = asyncio.Semaphore(16)
    users = [f"user-{i}" for i in range(200)]
    replies = await asyncio.gather(*(_ask(client, sem, u, experiment.name) for u in users))
    arms = [r.model_extra["empathy"]["arm"] for r in replies]
    assert arms == [assign(experiment, f"user:{u}").name for u in users]  # the stable hash, nothing else
    assert all(r.model_extra["empathy"]["source"] == "experiment" for r in replies)
    assert 0.65 <= Counter(arms)["sens"] / 200 <= 0.85  # weight 3:1, binomial sd 0.03
    again = await asyncio.gather(*(_ask(client, sem, u, experiment.name) for u in users[:20]))
    assert [r.model_extra["empathy"]["arm"] for r in again] == arms[:20]  # a user keeps their arm
    adapters = {r.model_extra["empathy"]["arm"]: r.model for r in replies}
    assert adapters == {"quarter": gateway.gateway.catalog.blends[0.25], "sens": "empathy-sensibility"}
    assert experiment.name in {m.id for m in (await client.models.list()).data}
    await client.close()


def test_feedback_and_results(gateway: Running, experiment: Experiment) -> None:
    client = gateway.client()
    # Users picked by the assignment's stable hash (the name is random per test, so 12 fixed users all
    # landed in `sens` in 0.75^12 = 3% of runs): three of `quarter`, nine of `sens`.
    expected: dict[str, list[str]] = {}
    for user in (f"fb-{i}" for i in range(200)):
        expected.setdefault(assign(experiment, f"user:{user}").name, []).append(user)
    users = expected["quarter"][:3] + expected["sens"][:9]
    by_arm: dict[str, list[str]] = {}
    for user in users:
        r = client.chat.completions.create(model=experiment.name, messages=MSG, max_tokens=1, user=user)
        by_arm.setdefault(r.model_extra["empathy"]["arm"], []).append(r.id)
    assert {arm: len(ids) for arm, ids in by_arm.items()} == {"quarter": 3, "sens": 9}
    q, s = by_arm["quarter"][0], by_arm["sens"][0]
    with _api(gateway) as api:
        for body in ({"type": "rating", "completion_id": s, "value": 1},
                     {"type": "rating", "completion_id": q, "value": 0},
                     {"type": "rating", "completion_id": s, "value": 4, "scale": "likert"},
                     {"type": "pairwise", "completion_a": s, "completion_b": q, "outcome": "a", "user": "v1"},
                     {"type": "pairwise", "completion_a": q, "completion_b": s, "outcome": "tie",
                      "user": "v2"}):  # one vote per voter and pair
            assert api.post("/v1/feedback", json=body).status_code == 200
        unknown = {"type": "rating", "completion_id": "chatcmpl-nope", "value": 1}
        missing = api.post("/v1/feedback", json=unknown)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "completion_not_found"
        bad = api.post("/v1/feedback", json={"type": "rating", "completion_id": s, "value": 7})
        assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "param", "code"}
        listed = {e["name"]: e for e in api.get("/v1/experiments").json()["data"]}
        assert listed[experiment.name]["arms"][1] == {"name": "sens", "model": "empathy-sensibility",
                                                      "weight": 3.0}
        res = api.get(f"/v1/experiments/{experiment.name}/results").json()
        assert api.get("/v1/experiments/nope/results").status_code == 404
    arms = {a["name"]: a for a in res["arms"]}
    assert arms["sens"]["thumbs"]["mean"] == 1.0 and arms["quarter"]["thumbs"]["mean"] == 0.0
    assert arms["sens"]["likert"]["n"] == 1 and res["votes"] == 2
    assert arms["sens"]["win_rate"]["win_rate"] == pytest.approx(0.75)
    assert arms["sens"]["bradley_terry"]["rating"] > arms["quarter"]["bradley_terry"]["rating"]
    assert sum(a["assigned_users"] for a in arms.values()) == 12  # the 12 users above, no one else
    assert {name: a["completions"] for name, a in arms.items()} == {k: len(v) for k, v in by_arm.items()}


def test_arena_asks_for_arms_by_name(gateway: Running, experiment: Experiment) -> None:
    """One user sees both arms (the arena): each reply is stored under its arm, the vote counts, and
    naming an arm is not an assignment."""
    client = gateway.client()
    with _api(gateway) as api:
        before = api.get(f"/v1/experiments/{experiment.name}/results").json()
        ids = {}
        for arm in ("quarter", "sens"):
            r = client.chat.completions.create(model=experiment.name, messages=MSG, max_tokens=1,
                                               user="arena-1", extra_body={"empathy": {"arm": arm}})
            assert r.model_extra["empathy"]["arm"] == arm
            ids[arm] = r.id
        vote = {"type": "pairwise", "completion_a": ids["quarter"], "completion_b": ids["sens"],
                "outcome": "a"}
        assert api.post("/v1/feedback", json=vote).status_code == 200
        after = api.get(f"/v1/experiments/{experiment.name}/results").json()
        bad = api.post("/v1/chat/completions", json={"model": experiment.name, "messages": MSG,
                                                      "empathy": {"arm": "nope"}})
    assert after["votes"] == before["votes"] + 1
    assigned = {a["name"]: a["assigned_users"] for a in after["arms"]}
    assert assigned == {a["name"]: a["assigned_users"] for a in before["arms"]}
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "empathy"
    assert "quarter" in bad.json()["error"]["message"]


async def _chat_and_rate(client: AsyncOpenAI, api: httpx.AsyncClient, i: int, stream: bool,
                         experiment: str) -> str:
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model="empathy", messages=MSG, max_tokens=2, user=f"c-{i}", stream=True)]
        cid = chunks[0].id
    else:
        cid = (await client.chat.completions.create(model=experiment, messages=MSG, max_tokens=2,
                                                    user=f"c-{i}")).id
    resp = await api.post("/v1/feedback", json={"type": "rating", "completion_id": cid, "value": i % 2})
    assert resp.status_code == 200, resp.text
    return cid


async def test_50_concurrent_requests_with_feedback_lose_nothing(gateway: Running,
                                                                 experiment: Experiment) -> None:
    store = gateway.gateway.store
    await asyncio.to_thread(gateway.rows_written)  # rows of earlier tests' replies, still being written
    before = await asyncio.to_thread(store.counts)
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0, timeout=300)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=300,
                                 headers={"authorization": f"Bearer {API_KEY}"}) as api:
        ids = await asyncio.gather(*(_chat_and_rate(client, api, i, i % 2 == 0, experiment.name)
                                     for i in range(50)))
    await client.close()
    await asyncio.to_thread(gateway.rows_written)
    after = await asyncio.to_thread(store.counts)
    assert len(set(ids)) == 50
    assert after["serve_ratings"] - before["serve_ratings"] == 50
    assert after["serve_completions"] - before["serve_completions"] == 50
    assert not await asyncio.to_thread(store.missing_completions, ids)


def test_admin_only_endpoints(gateway: Running, experiment: Experiment) -> None:
    patch, path = {"active": False}, f"/v1/experiments/{experiment.name}"
    with httpx.Client(base_url=gateway.url, timeout=30) as anon:
        assert anon.patch(path, json=patch).status_code == 401
        assert anon.post("/admin/reload").status_code == 401
    with _api(gateway) as api:
        refused = api.patch(path, json=patch)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_admin"
        assert api.post("/admin/reload").status_code == 403  # (a real reload: tests/serve/test_serve_process)
        assert api.put(path, json=experiment.model_dump(exclude={"created"})).status_code == 403
    with _admin(gateway) as admin:
        assert admin.patch(path, json=patch).json()["active"] is False
        with pytest.raises(openai.NotFoundError):  # an inactive experiment is not a model
            gateway.client().chat.completions.create(model=experiment.name, messages=MSG, max_tokens=1)
        assert admin.patch(path, json={"active": True}).status_code == 200
    assert gateway.client().chat.completions.create(model=experiment.name, messages=MSG, max_tokens=1).choices


def test_get_and_put_one_experiment(gateway: Running, experiment: Experiment) -> None:
    path = f"/v1/experiments/{experiment.name}"
    with _api(gateway) as api:
        got = api.get(path).json()
        assert api.get("/v1/experiments/no-such-exp").json()["error"]["code"] == "experiment_not_found"
    assert got["name"] == experiment.name and got["active"] is True
    assert got["arms"] == [a.model_dump() for a in experiment.arms]
    replaced = {"name": experiment.name, "description": "all on the sensibility expert",
                "arms": [{"name": "sens", "model": "empathy-sensibility", "weight": 1}]}
    with _admin(gateway) as admin:
        put = admin.put(path, json=replaced)
        assert put.status_code == 200, put.text
        wrong_name = admin.put(path, json={**replaced, "name": "other-name"})
        unknown = admin.put(path, json={**replaced, "arms": [{"name": "x", "model": "gpt-9"}]})
    assert wrong_name.status_code == 400 and wrong_name.json()["error"]["param"] == "name"
    assert unknown.status_code == 400
    with _api(gateway) as api:
        got = api.get(path).json()
    assert got["description"] == replaced["description"] and [a["name"] for a in got["arms"]] == ["sens"]
    reply = gateway.client().chat.completions.create(model=experiment.name, messages=MSG, max_tokens=1,
                                                     user="put-user")
    assert reply.model_extra["empathy"]["arm"] == "sens" and reply.model == "empathy-sensibility"


EXPERIMENTS_TOML = """
[[experiments]]
name = "{name}"
description = "from the file"
[[experiments.arms]]
name = "quarter"
model = "blend:0.25"
weight = 1
[[experiments.arms]]
name = "sens"
model = "empathy-sensibility"
weight = 3
"""


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_experiments_file_is_loaded_at_start(tmp_path: Path, tiny_artifacts: Path, vllm_server: str,
                                             suffix: str) -> None:
    """`--experiments FILE` (setting experiments_file): its experiments are models from the start."""
    import tomllib

    import yaml

    name = f"file-exp-{suffix[1:]}"
    text = EXPERIMENTS_TOML.format(name=name)
    path = tmp_path / f"exp{suffix}"
    path.write_text(text if suffix == ".toml" else yaml.safe_dump(tomllib.loads(text)))
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[f"{vllm_server}/v1"],
                             experiments_file=str(path))
    with serve_app(create_app(settings)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        assert name in {m.id for m in client.models.list().data}
        reply = client.chat.completions.create(model=name, messages=MSG, max_tokens=1, user="file-user")
        expected = assign(Experiment.model_validate(tomllib.loads(text)["experiments"][0]), "user:file-user")
        assert reply.model_extra["empathy"]["experiment"] == name
        assert reply.model_extra["empathy"]["arm"] == expected.name
        listed = httpx.get(f"{url}/v1/experiments/{name}", headers={"authorization": f"Bearer {API_KEY}"})
        assert listed.json()["description"] == "from the file"
