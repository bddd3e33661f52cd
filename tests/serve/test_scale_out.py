"""Scale-out end to end: two gateways (in-process uvicorn, the real app) over ONE PostgreSQL database (a real
server, `postgres` fixture) and two vLLM upstreams.

The upstreams are the session's one vLLM server listed twice: directly, and through a TCP forwarder process
(`tests/serve/tcp_proxy.py`) that the failover test kills, as an engine that dies (a second vLLM engine
would double the memory and the CPU load for no other difference the gateway can see; the shared engine is
never killed, other tests use it).

- 50 concurrent conversations of 3 turns, each turn on the other gateway than the one before, every reply
  rated through the other gateway than the one that answered it: every completion and rating is stored
  exactly once, a conversation keeps its blend and a user their arm whichever gateway answers, and the
  experiment's results are identical from both gateways.
- The forwarder is killed under load: only requests in flight through it may fail, with a clear error;
  traffic leaves it within the health interval (measured, written to test-artifacts/scale_out.json); it
  returns when the forwarder does; killed again while idle, the health checks alone take it out.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from sqlalchemy import Engine, text

from empathy.db import make_engine
from serve.experiments import Experiment, assign
from tests.conftest import REPO, free_port
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running, make_settings, serve_app

pytestmark = pytest.mark.slow
HEALTH_INTERVAL = 0.5
CONVERSATIONS, TURNS = 50, 3
OPENERS = ["I failed my driving test again and I feel stupid.", "My sister is moving abroad next month.",
           "I got the job I wanted!", "My dog has been sick all week.", "I can't sleep before my exam."]
ARMS = [{"name": "routed", "model": "empathy"}, {"name": "sens", "model": "empathy-sensibility"},
        {"name": "quarter", "model": "blend:0.25"}]


@dataclass
class Cluster:
    gateways: list[Running]
    proxied: str  # the upstream URL through the forwarder
    proxy_port: int
    target_port: int
    engine: Engine
    supervisor: Any  # the session engine's: another test may have it restarting
    proxy: subprocess.Popen[str] | None = None

    def wait_ready(self) -> None:
        """The session engine up and both upstreams in on both gateways (a deadline, not a measurement)."""
        self.supervisor.wait_ready(timeout=1500)
        deadline = time.monotonic() + 120
        while not all(u.healthy for g in self.gateways for u in g.gateway.pool.upstreams):
            assert time.monotonic() < deadline, "the gateways never saw both upstreams healthy"
            time.sleep(0.1)

    def start_proxy(self) -> None:
        self.proxy = subprocess.Popen([sys.executable, "-m", "tests.serve.tcp_proxy", str(self.proxy_port),
                                       str(self.target_port)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proxy.stdout is not None and self.proxy.stdout.readline().strip() == "listening"

    def kill_proxy(self) -> None:
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.kill()
            self.proxy.wait(timeout=10)

    def proxied_upstreams(self) -> list[Any]:
        return [u for g in self.gateways for u in g.gateway.pool.upstreams if u.url == self.proxied]


@pytest.fixture(scope="module")
def cluster(postgres: Any, vllm_server: str, engine_supervisor: Any, tiny_artifacts: Path, tiny_router: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from serve.app import create_app

    database = postgres.create_database()
    proxy_port = free_port()
    engine = make_engine(postgres.url(database))
    found = Cluster([], f"http://127.0.0.1:{proxy_port}", proxy_port, int(vllm_server.rsplit(":", 1)[1]),
                    engine, engine_supervisor)
    found.start_proxy()
    try:
        with ExitStack() as stack:
            for i in range(2):
                settings = make_settings(tmp_path_factory.mktemp(f"scale-gw{i}"), tiny_artifacts,
                                         store_url=postgres.url(database),
                                         upstreams=[vllm_server, found.proxied],
                                         health_interval=HEALTH_INTERVAL, experiments_refresh=1.0,
                                         health_timeout=30.0)  # a loaded machine: slow is not dead
                app = create_app(settings, router=tiny_router)
                found.gateways.append(Running(stack.enter_context(serve_app(app)), app))
            yield found
    finally:
        found.kill_proxy()
        engine.dispose()
        postgres.drop_database(database)


# ---- 50 conversations over two gateways -------------------------------------------------------------

@dataclass
class Turn:
    conversation: int
    gateway: int
    id: str
    empathy: dict[str, Any]


@dataclass
class Conversations:
    run: str
    experiment: str
    turns: list[Turn] = field(default_factory=list)
    ratings: dict[str, int] = field(default_factory=dict)


def _user(run: str, c: int) -> str:
    return f"user-{run}-{c // 4}"  # experiment conversations (odd c): 2 per user


async def _ask(client: AsyncOpenAI, convs: Conversations, c: int, t: int,
               messages: list[dict[str, str]]) -> tuple[str, dict[str, Any], str]:
    """One turn: streamed on the middle turn; (id, empathy field, reply text)."""
    args: dict[str, Any] = {"messages": messages, "max_tokens": 6}
    if c % 2 == 0:
        args.update(model="empathy", extra_headers={"x-session-id": f"conv-{convs.run}-{c}"})
    else:
        args.update(model=convs.experiment, user=_user(convs.run, c))
    if t != 1:
        reply = await client.chat.completions.create(**args)
        return reply.id, reply.model_extra["empathy"], reply.choices[0].message.content or ""
    parts: list[str] = []
    info: dict[str, Any] = {}
    cid = ""
    async for chunk in await client.chat.completions.create(stream=True, **args):
        cid, info = chunk.id, info or (chunk.model_extra or {}).get("empathy", {})
        parts += [ch.delta.content or "" for ch in chunk.choices]
    return cid, info, "".join(parts)


async def _conversation(clients: list[AsyncOpenAI], feedback: list[httpx.AsyncClient], convs: Conversations,
                        c: int) -> None:
    messages = [{"role": "user", "content": OPENERS[c % len(OPENERS)]}]
    for t in range(TURNS):
        g = (c + t) % 2
        cid, info, reply = await _ask(clients[g], convs, c, t, messages)
        convs.turns.append(Turn(c, g, cid, info))
        value = (c + t) % 2
        resp = await feedback[1 - g].post("/v1/feedback", json={"type": "rating", "completion_id": cid,
                                                                 "value": value})
        assert resp.status_code == 200, resp.text
        convs.ratings[cid] = value
        messages += [{"role": "assistant", "content": reply or "..."},
                     {"role": "user", "content": f"Tell me more ({t})."}]


async def _talk(cluster: Cluster, convs: Conversations) -> None:
    clients = [AsyncOpenAI(base_url=f"{g.url}/v1", api_key=API_KEY, max_retries=0, timeout=600)
               for g in cluster.gateways]
    feedback = [httpx.AsyncClient(base_url=g.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=120)
                for g in cluster.gateways]
    try:
        await asyncio.gather(*(_conversation(clients, feedback, convs, c) for c in range(CONVERSATIONS)))
    finally:
        for client in clients:
            await client.close()
        for fb in feedback:
            await fb.aclose()


def _create_experiment(cluster: Cluster, name: str) -> Experiment:
    first, second = cluster.gateways
    resp = httpx.post(f"{first.url}/v1/experiments", json={"name": name, "arms": ARMS},
                      headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 30  # the other gateway reloads experiments every second
    while name not in second.gateway.experiments:
        assert time.monotonic() < deadline, "the second gateway never saw the experiment"
        time.sleep(0.1)
    return Experiment.model_validate(resp.json())


def _delete_experiment(cluster: Cluster, name: str) -> None:
    resp = httpx.delete(f"{cluster.gateways[0].url}/v1/experiments/{name}",
                        headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert resp.status_code == 200, resp.text


def _vote(cluster: Cluster, convs: Conversations) -> list[tuple[str, str]]:
    """Pairwise votes between replies of two different arms, alternately through each gateway."""
    by_arm: dict[str, list[str]] = defaultdict(list)
    for turn in convs.turns:
        if turn.empathy.get("experiment"):
            by_arm[turn.empathy["arm"]].append(turn.id)
    pairs = sorted({(by_arm[x][k % len(by_arm[x])], by_arm[y][(k + 1) % len(by_arm[y])])
                    for x, y in itertools.combinations(sorted(by_arm), 2) for k in range(3)})
    for i, (a, b) in enumerate(pairs):
        vote = {"type": "pairwise", "completion_a": a, "completion_b": b, "outcome": "ab"[i % 2]}
        resp = httpx.post(f"{cluster.gateways[i % 2].url}/v1/feedback", json=vote, timeout=30,
                          headers={"authorization": f"Bearer {API_KEY}"})
        assert resp.status_code == 200, resp.text
    return pairs


def _stored(engine: Engine, sql: str, ids: list[str]) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), {"ids": ids}).all())


def _check_store(cluster: Cluster, convs: Conversations) -> dict[str, int]:
    ids = [t.id for t in convs.turns]
    assert len(set(ids)) == len(ids) == CONVERSATIONS * TURNS
    for gateway in cluster.gateways:
        gateway.rows_written()  # the rows of the last replies (written behind them)
    rows = _stored(cluster.engine, "SELECT id, adapter, blend, arm FROM serve_completions "
                   "WHERE id = ANY(:ids)", ids)
    assert len(rows) == len(ids)  # every completion once (the id is the primary key: never twice)
    by_id = {t.id: t for t in convs.turns}
    assert all((r.adapter, r.blend, r.arm) == (by_id[r.id].empathy["adapter"], by_id[r.id].empathy["blend"],
                                                by_id[r.id].empathy["arm"]) for r in rows)
    ratings = _stored(cluster.engine, "SELECT completion_id, value FROM serve_ratings "
                      "WHERE completion_id = ANY(:ids)", ids)
    assert sorted((r.completion_id, int(r.value)) for r in ratings) == sorted(convs.ratings.items())
    with cluster.engine.connect() as conn:
        assigned = conn.execute(text("SELECT count(*) FROM serve_assignments WHERE experiment = :e"),
                                {"e": convs.experiment}).scalar()
    experiment_turns = sum(1 for t in convs.turns if t.conversation % 2 == 1)
    assert assigned == experiment_turns  # one assignment logged per experiment request, by either gateway
    return {"completions": len(rows), "ratings": len(ratings), "assignments": int(assigned or 0)}


def _check_stickiness(convs: Conversations, exp: Experiment) -> None:
    per_conv: dict[int, list[Turn]] = defaultdict(list)
    for turn in convs.turns:
        per_conv[turn.conversation].append(turn)
    arm_of_user: dict[str, set[tuple[str, str, float | None]]] = defaultdict(set)
    for c, turns in per_conv.items():
        assert {t.gateway for t in turns} == {0, 1}
        if c % 2 == 0:  # routed: the router decides once, later turns (either gateway) are sticky
            assert len({(t.empathy["adapter"], t.empathy["blend"]) for t in turns}) == 1, turns
            assert sorted(t.empathy["source"] for t in turns) == ["router", "sticky", "sticky"]
        else:
            user = _user(convs.run, c)
            arm_of_user[user] |= {(t.empathy["arm"], t.empathy["adapter"], t.empathy["blend"]) for t in turns}
            assert all(t.empathy["arm"] == assign(exp, f"user:{user}").name for t in turns)
    assert all(len(arms) == 1 for arms in arm_of_user.values()), arm_of_user  # blend too, for `routed`
    assert len({next(iter(a))[0] for a in arm_of_user.values()}) >= 2  # the users did spread over arms


def test_fifty_conversations_over_two_gateways_share_one_store(cluster: Cluster, artifacts_dir: Path) -> None:
    cluster.wait_ready()
    run = uuid.uuid4().hex[:6]
    exp = _create_experiment(cluster, f"scale-{run}")
    try:
        convs = Conversations(run, exp.name)
        started = time.monotonic()
        asyncio.run(_talk(cluster, convs))
        seconds = time.monotonic() - started
        counts = _check_store(cluster, convs)
        _check_stickiness(convs, exp)
        votes = _vote(cluster, convs)
        results = [httpx.get(f"{g.url}/v1/experiments/{exp.name}/results", timeout=60,
                             headers={"authorization": f"Bearer {API_KEY}"}).json() for g in cluster.gateways]
        assert results[0] == results[1]
        assert sum(a["completions"] for a in results[0]["arms"]) == counts["assignments"]
        assert sum(a["thumbs"]["n"] for a in results[0]["arms"]) == counts["assignments"]
        assert results[0]["votes"] == len(votes)
        counts.update(votes=len(votes), seconds=round(seconds, 1))
        _write_artifact(artifacts_dir, "conversations", counts)
    finally:
        _delete_experiment(cluster, exp.name)


# ---- one upstream dies ------------------------------------------------------------------------------

@dataclass
class Outcome:
    started: float
    ended: float
    error: str | None


async def _load_worker(client: AsyncOpenAI, w: int, stop: asyncio.Event, out: list[Outcome]) -> None:
    i = 0
    while not stop.is_set():
        args: dict[str, Any] = {"model": "base" if (w + i) % 2 else "empathy-sensibility", "max_tokens": 16,
                                "messages": [{"role": "user", "content": f"Say something kind ({w}, {i})."}],
                                "extra_body": {"ignore_eos": True}}
        started, error = time.monotonic(), None
        try:
            if i % 2:
                async for _chunk in await client.chat.completions.create(stream=True, **args):
                    pass
            else:
                await client.chat.completions.create(**args)
        except openai.APIError as exc:
            error = f"{type(exc).__name__}: {exc}"
        out.append(Outcome(started, time.monotonic(), error))
        i += 1


async def _watch_down(cluster: Cluster, since: float, timeout: float) -> list[float | None]:
    """Seconds from `since` until each gateway takes the forwarder's upstream out (None: never)."""
    down: list[float | None] = [None] * len(cluster.gateways)
    deadline = since + timeout
    while None in down and time.monotonic() < deadline:
        for i, u in enumerate(cluster.proxied_upstreams()):
            if down[i] is None and not u.healthy:
                down[i] = time.monotonic() - since
        await asyncio.sleep(0.002)
    return down


async def _kill_under_load(cluster: Cluster) -> dict[str, Any]:
    clients = [AsyncOpenAI(base_url=f"{g.url}/v1", api_key=API_KEY, max_retries=0, timeout=600)
               for g in cluster.gateways]
    stop, out = asyncio.Event(), []  # type: ignore[var-annotated]
    workers = [asyncio.create_task(_load_worker(clients[w % 2], w, stop, out)) for w in range(12)]
    deadline = time.monotonic() + 300
    while sum(u.outstanding for u in cluster.proxied_upstreams()) < 2:  # requests in flight through it
        assert time.monotonic() < deadline, "no request ever went through the forwarder"
        await asyncio.sleep(0.005)
    in_flight = sum(u.outstanding for u in cluster.proxied_upstreams())
    killed = time.monotonic()
    cluster.kill_proxy()
    down = await _watch_down(cluster, killed, timeout=30)
    deadline = time.monotonic() + 600
    while sum(o.started > killed for o in out) < 24:  # load goes on: it all goes to the other upstream now
        assert time.monotonic() < deadline, "the load stopped after the kill"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*workers)
    for client in clients:
        await client.close()
    return {"in_flight": in_flight, "killed": killed, "down": down, "outcomes": out}


def _wait_healthy(cluster: Cluster, since: float) -> float:
    deadline = since + 60
    while not all(u.healthy for u in cluster.proxied_upstreams()):
        assert time.monotonic() < deadline, "the restarted forwarder never came back in"
        time.sleep(0.002)
    return time.monotonic() - since


@pytest.mark.last_in_module
def test_killed_upstream_loses_only_its_in_flight_requests(cluster: Cluster, artifacts_dir: Path) -> None:
    cluster.wait_ready()
    loaded = asyncio.run(_kill_under_load(cluster))
    outcomes: list[Outcome] = loaded["outcomes"]
    failed = [o for o in outcomes if o.error]
    assert all(o.started < loaded["killed"] for o in failed), failed  # nothing sent after the kill fails
    assert len(failed) <= loaded["in_flight"], failed  # only requests that were in flight through it
    assert all("engine stopped mid-stream" in str(o.error) or "vLLM" in str(o.error) for o in failed), failed
    after = [o for o in outcomes if o.started > loaded["killed"]]
    assert len(after) >= 24 and not any(o.error for o in after), [o.error for o in after if o.error]
    assert None not in loaded["down"], "a gateway kept the dead upstream in"

    restarted = time.monotonic()
    cluster.start_proxy()
    back = _wait_healthy(cluster, restarted)
    idle_kill = time.monotonic()
    cluster.kill_proxy()  # no traffic now: only the health checks can notice
    idle_down = asyncio.run(_watch_down(cluster, idle_kill, timeout=30))
    assert None not in idle_down
    # A hang guard, not a performance limit: a check every HEALTH_INTERVAL, its connection refused at once.
    assert max(idle_down) < HEALTH_INTERVAL + 5  # type: ignore[type-var]
    numbers = {"requests": len(outcomes), "failed_in_flight": len(failed),
               "in_flight_on_killed": loaded["in_flight"],
               "requests_after_kill": len(after), "seconds_to_leave_under_load": loaded["down"],
               "seconds_back_after_restart": round(back, 3), "seconds_to_leave_idle": idle_down,
               "health_interval": HEALTH_INTERVAL, "errors": sorted({str(o.error)[:120] for o in failed})}
    _write_artifact(artifacts_dir, "failover", numbers)


def _write_artifact(artifacts_dir: Path, key: str, numbers: dict[str, Any]) -> None:
    path = artifacts_dir / "scale_out.json"
    found = json.loads(path.read_text()) if path.is_file() else {}
    found[key] = numbers
    path.write_text(json.dumps(found, indent=2) + "\n")
    print(f"scale-out {key}: {json.dumps(numbers)}")
