"""Hostile traffic against the real engine (issue 13, failures 2 and 4): abandoned work stops, experiment
results count only the experiment's own traffic. A gateway of this module's own (own store) over the
session's vLLM server, so nothing here changes what other tests see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from serve.app import create_app
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running, make_settings, serve_app

pytestmark = pytest.mark.slow
AUTH = {"authorization": f"Bearer {API_KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MSG = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and the sea."}]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Any, vllm_server: str) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("hostile-engine")
    app = create_app(make_settings(tmp, tiny_artifacts, upstreams=[f"{vllm_server}/v1"]))
    with serve_app(app) as url:
        yield Running(url, app)


def running_requests(vllm_server: str) -> float:
    """vLLM's own gauge of requests it is generating for."""
    text = httpx.get(f"{vllm_server}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:num_requests_running"))


def engine_cpu_seconds(pid: int) -> float:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def wait_idle(vllm_server: str, timeout: float) -> float | None:
    """Seconds until vLLM runs nothing (None: still busy after `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if running_requests(vllm_server) == 0:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def _abandon(url: str, body: dict[str, Any], after: float) -> None:
    """Send `body`, read for `after` seconds (or wait that long for a reply), then hang up."""
    started = time.monotonic()
    with httpx.Client(base_url=url, headers=AUTH) as client:
        try:
            with client.stream("POST", "/v1/chat/completions", json=body, timeout=after) as resp:
                for _ in resp.iter_bytes():
                    if time.monotonic() - started > after:
                        break
        except httpx.ReadTimeout:
            pass


@pytest.mark.parametrize("stream", [False, True])
def test_abandoned_request_stops_generating(own: Running, vllm_server: str, engine_supervisor: Any,
                                            stream: bool) -> None:
    """A client that gives up after 1.5 s on 4 x 900 tokens (many seconds of work here): vLLM stops within
    2 s, and its CPU use falls back to idle."""
    assert wait_idle(vllm_server, 120) is not None
    body = {"model": "base", "messages": MSG, "max_tokens": 900, "n": 4, "ignore_eos": True, "stream": stream}
    _abandon(own.url, body, after=1.5)
    left = time.monotonic()
    assert running_requests(vllm_server) > 0 or time.monotonic() - left < 0.5
    idle_after = wait_idle(vllm_server, 30)
    assert idle_after is not None and idle_after < 2.0, f"vLLM busy {idle_after} s after the client left"
    time.sleep(max(0.0, 2.0 - (time.monotonic() - left)))
    cpu = engine_cpu_seconds(engine_supervisor.pid)
    time.sleep(1.0)
    busy = engine_cpu_seconds(engine_supervisor.pid) - cpu
    print(f"stream={stream}: vLLM idle {idle_after:.2f} s after the client left; CPU from 2 s to 3 s after: "
          f"{busy:.2f} core-seconds")
    assert busy < 0.5  # a generating engine keeps both cores busy (2.0)


def _results(client: httpx.Client, name: str) -> dict[str, dict[str, Any]]:
    resp = client.get(f"/v1/experiments/{name}/results")
    assert resp.status_code == 200, resp.text
    return {a["name"]: a for a in resp.json()["arms"]}


def test_results_count_only_the_experiments_own_traffic(own: Running) -> None:
    exp = {"name": "own-traffic", "arms": [{"name": "sens", "model": "empathy-sensibility"},
                                           {"name": "plain", "model": "base"}]}
    with httpx.Client(base_url=own.url, headers=AUTH, timeout=120) as api, \
            httpx.Client(base_url=own.url, headers=ADMIN, timeout=120) as admin:
        for model in ("empathy-sensibility", "base", "base"):  # ordinary traffic to the arms' models
            reply = api.post("/v1/chat/completions", json={"model": model, "messages": MSG, "max_tokens": 1})
            rating = {"type": "rating", "completion_id": reply.json()["id"], "value": 1}
            assert api.post("/v1/feedback", json=rating).status_code == 200
        assert admin.post("/v1/experiments", json=exp).status_code == 200
        arms = _results(api, "own-traffic")
        assert all(a["completions"] == 0 and a["thumbs"]["n"] == 0 and a["assigned_users"] == 0
                   for a in arms.values()), arms
        for user in ("u1", "u2", "u3"):
            body = {"model": "own-traffic", "messages": MSG, "max_tokens": 1, "user": user}
            assert api.post("/v1/chat/completions", json=body).status_code == 200
        arms = _results(api, "own-traffic")
        assert sum(a["completions"] for a in arms.values()) == 3
        assert sum(a["assigned_users"] for a in arms.values()) == 3
        # Deleted and created again under the same name: a new experiment, with none of the old traffic.
        assert admin.delete("/v1/experiments/own-traffic").status_code == 200
        assert admin.post("/v1/experiments", json=exp).status_code == 200
        arms = _results(api, "own-traffic")
        assert sum(a["completions"] + a["assigned_users"] for a in arms.values()) == 0
