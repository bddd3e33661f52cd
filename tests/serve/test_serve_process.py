"""`empathy serve` owning its vLLM child, against a gateway process and an engine of the tests' own (never
the session engine): a killed engine is restarted and an upstream gateway sees it come back, a reload with a
new adapter set respawns it, SIGTERM/SIGINT stop it with the gateway, failed starts back off.

No assertion is on how fast anything happened: on a loaded 2-core machine a vLLM start takes from one to
several minutes, so each wait is a generous deadline (see tests/serve/own_serve.py), and the one timing
check (the backoff) is a lower bound, which load can only make larger.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from serve.app import create_app
from tests.conftest import free_port
from tests.serve.conftest import ADMIN_KEY, API_KEY, make_settings, serve_app
from tests.serve.own_serve import (
    ENGINE_DEADLINE,
    ServeHolder,
    ServeProcess,
    alive,
    group_members,
    own_data_dir,
    start_serve,
    wait_for,
)

# Each test may wait for a vLLM start or two: past the suite's per-test limit on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
MSG = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Path,
           tiny_model_dir: Path) -> Iterator[ServeHolder]:
    keeper = ServeHolder(tmp_path_factory.mktemp("own-serve"), tiny_artifacts, tiny_model_dir)
    try:
        yield keeper
    finally:
        keeper.close()


@pytest.fixture
def own_serve(holder: ServeHolder) -> ServeProcess:
    """A running `empathy serve` whose engine is ready (a new one if an earlier test stopped it)."""
    return holder.get()


def _unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "engine_unavailable"
    assert int(resp.headers["retry-after"]) > 0


def _chat(url: str, model: str = "base") -> httpx.Response:
    body = {"model": model, "messages": MSG, "max_tokens": 3, "ignore_eos": True}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120,
                      headers={"authorization": f"Bearer {API_KEY}"})


def _kill_mid_stream(serve: ServeProcess, engine: int) -> int:
    """Stream a long reply through the gateway and SIGKILL the engine's process group after 2 chunks."""
    stream = serve.client().chat.completions.create(model="empathy", messages=MSG, max_tokens=900,
                                                    stream=True, extra_body={"ignore_eos": True})
    received = 0
    with pytest.raises(openai.APIError):
        for _ in stream:
            received += 1
            if received == 2:
                os.killpg(engine, signal.SIGKILL)
    return received


def test_killed_engine_restarts_and_a_dead_upstream_comes_back(own_serve: ServeProcess,
                                                               tmp_path: Path) -> None:
    """SIGKILL of the vLLM child mid-stream: the stream ends with an error, the gateway answers 503 with
    retry-after while the supervisor restarts the child (once), then serves again. A second gateway that
    uses the same engine as an `--upstream` takes it out while it is dead and back when it answers."""
    engine, before = own_serve.engine_pid(), own_serve.restarts()
    assert engine is not None
    settings = make_settings(tmp_path, own_serve.data_dir, upstreams=[f"{own_serve.vllm_url}/v1"])
    with serve_app(create_app(settings)) as upstream_gateway:
        assert _chat(upstream_gateway).status_code == 200
        assert 2 <= _kill_mid_stream(own_serve, engine) < 900
        # The supervisor must SEE the death before anything waits for the restart.
        wait_for(lambda: own_serve.restarts() >= before + 1, 120, "the supervisor to count the restart")
        assert not alive(engine)
        # vLLM takes far longer to start than these few requests (no race): both gateways answer 503.
        health = own_serve.health()
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        _unavailable(_chat(own_serve.url))
        # The upstream gateway learns of the death from its health checks (a request on a pooled
        # connection that broke is a 502 for that request only), then refuses fast with 503.
        wait_for(lambda: httpx.get(f"{upstream_gateway}/health").status_code == 503, 60,
                 "the upstream gateway to take the dead engine out")
        _unavailable(_chat(upstream_gateway))
        wait_for(own_serve.ready, ENGINE_DEADLINE, "the restarted engine")
        assert own_serve.restarts() == before + 1
        assert own_serve.engine_pid() not in (None, engine)
        reply = own_serve.client().chat.completions.create(model="empathy", messages=MSG, max_tokens=3,
                                                           extra_body={"ignore_eos": True})
        assert reply.usage.completion_tokens == 3 and reply.choices[0].message.content
        wait_for(lambda: httpx.get(f"{upstream_gateway}/health").status_code == 200, 60,
                 "the upstream gateway to take the engine back")
        assert _chat(upstream_gateway).json()["usage"]["completion_tokens"] == 3


def test_admin_reload_with_a_new_adapter_respawns_the_engine(own_serve: ServeProcess,
                                                             tiny_artifacts: Path) -> None:
    name = f"extra{uuid.uuid4().hex[:6]}"
    before = own_serve.restarts()
    with own_serve.http(ADMIN_KEY) as admin:
        unchanged = admin.post("/admin/reload").json()
        assert unchanged["engine_restarted"] is False and name not in unchanged["experts"]
        shutil.copytree(tiny_artifacts / "experts" / "sensibility", own_serve.data_dir / "experts" / name)
        reloaded = admin.post("/admin/reload").json()
    assert reloaded["engine_restarted"] is True and reloaded["experts"][name] == f"empathy-{name}"
    wait_for(lambda: own_serve.restarts() >= before + 1, 120, "the supervisor to see the respawn")
    wait_for(own_serve.ready, ENGINE_DEADLINE, "the respawned engine")
    assert own_serve.restarts() == before + 1
    with own_serve.http() as api:
        assert f"empathy-{name}" in {m["id"] for m in api.get("/v1/models").json()["data"]}
    resp = _chat(own_serve.url, f"empathy-{name}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == f"empathy-{name}"  # vLLM itself served the new adapter
    route = resp.headers["x-empathy-route"]
    assert f"adapter=empathy-{name}" in route and "source=fixed" in route


def _stops_with_its_engine(serve: ServeProcess, engine: int, signum: signal.Signals) -> None:
    """Send `signum` to `empathy serve`; it must exit cleanly and take the engine's whole process group
    (the API server and vLLM's engine core, even one spawned meanwhile) with it."""
    serve.proc.send_signal(signum)
    code = serve.proc.wait(timeout=180)  # a graceful stop includes vLLM's; generous on a loaded machine
    # uvicorn stops cleanly then re-raises the signal it caught: death by that signal, or exit 0.
    assert code in (0, -signum, 128 + signum), serve.log_tail()
    wait_for(lambda: not group_members(engine), 60, f"the engine's process group {engine} to exit")
    assert not alive(engine)
    assert "Traceback" not in serve.log_path.read_text(errors="replace"), serve.log_tail()


@pytest.mark.last_in_module  # it stops the module's `empathy serve`: later tests would need a new one
def test_sigterm_stops_the_gateway_and_its_ready_engine(holder: ServeHolder) -> None:
    serve = holder.get()  # this one is used up: the next test that needs one starts another
    engine = serve.engine_pid()
    assert engine is not None and len(group_members(engine)) >= 2  # API server + engine core
    _stops_with_its_engine(serve, engine, signal.SIGTERM)


def test_sigint_while_the_engine_starts_stops_everything(tmp_path: Path, tiny_artifacts: Path,
                                                         tiny_model_dir: Path) -> None:
    """Ctrl-C right after `empathy serve`: vLLM is still loading and must not be left running."""
    serve = start_serve(own_data_dir(tmp_path / "serve", tiny_artifacts), tiny_model_dir)
    try:
        engine = wait_for(serve.engine_pid, 120, "the vLLM child to be started")
        assert serve.health().status_code == 503  # not ready yet
        _stops_with_its_engine(serve, engine, signal.SIGINT)
    finally:
        serve.stop()


def test_failed_engine_starts_back_off_exponentially(tmp_path: Path, tiny_model_dir: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A child that cannot start (vLLM refuses an unknown flag) is retried after 1 s, then 2 s, ...:
    the gaps between a failure and the next start are lower-bounded, which load can only lengthen."""
    from empathy.engine import EngineSpec, EngineSupervisor

    spec = EngineSpec(model=str(tiny_model_dir), port=free_port(), extra_args=("--no-such-vllm-flag",))
    supervisor = EngineSupervisor(spec, tmp_path / "vllm.log", min_backoff=1.0, max_backoff=8.0)
    caplog.set_level(logging.INFO, logger="empathy.engine")

    def events(prefix: str) -> list[float]:
        return [r.created for r in caplog.records if r.name == "empathy.engine" and r.msg.startswith(prefix)]

    supervisor.start()
    try:
        wait_for(lambda: len(events("starting vLLM")) >= 3, ENGINE_DEADLINE, "three start attempts")
    finally:
        supervisor.stop()
    starts, failures = events("starting vLLM"), events("vLLM failed to start")
    gaps = [start - failed for failed, start in zip(failures, starts[1:], strict=False)]
    assert len(gaps) >= 2 and gaps[0] >= 0.95 and gaps[1] >= 1.95, gaps
    assert supervisor.restarts == 0 and not supervisor.ready  # never started, so never counted as a restart
    assert "no-such-vllm-flag" in (tmp_path / "vllm.log").read_text()  # vLLM's own refusal, logged
