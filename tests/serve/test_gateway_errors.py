"""Refusals and failures in the OpenAI error shape: auth, bad input, dead upstreams; health and metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from serve.app import create_app
from tests.conftest import free_port
from tests.serve.conftest import API_KEY, Running, make_settings, serve_app

pytestmark = pytest.mark.slow
MSG = [{"role": "user", "content": "hello"}]
SHAPE = {"message", "type", "param", "code"}


def _post(gateway: Running, content: bytes | str, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", content=content, timeout=30,
                      headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"})


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == SHAPE
    return body["error"]


def test_auth_refused_and_accepted(gateway: Running) -> None:
    for key in (None, "wrong"):
        with pytest.raises(openai.AuthenticationError) as err:
            gateway.client(key).models.list()
        assert err.value.body["code"] == "invalid_api_key"
    assert gateway.client().models.list().data
    assert gateway.client("admin-key").models.list().data  # the admin key is also an API key


@pytest.mark.parametrize(("body", "status", "param"), [
    ("{not json", 400, None),
    ("[1, 2]", 400, None),
    (json.dumps({"model": "nope", "messages": MSG}), 404, "model"),
    (json.dumps({"model": "base", "messages": MSG, "n": 0}), 400, "n"),
    (json.dumps({"model": "base", "messages": MSG, "max_tokens": -5}), 400, "max_tokens"),
    (json.dumps({"model": "base", "messages": []}), 400, "messages"),
    (json.dumps({"messages": MSG}), 400, "model"),
])
def test_bad_inputs(gateway: Running, body: str, status: int, param: str | None) -> None:
    assert _error(_post(gateway, body), status)["param"] == param


def test_huge_body_is_413(gateway: Running) -> None:
    big = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x" * 10_000_000}]})
    assert _error(_post(gateway, big), 413)["code"] == "request_too_large"


def test_sdk_sees_typed_errors(gateway: Running) -> None:
    client = gateway.client()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="base", messages=MSG, n=0)
    with pytest.raises(openai.BadRequestError):  # vLLM's own refusal, passed through in the same shape
        client.chat.completions.create(model="base", messages=MSG, temperature=-1)


def test_vllm_adapter_endpoints_are_not_exposed(gateway: Running) -> None:
    for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
        _error(_post(gateway, json.dumps({"lora_name": "x", "lora_path": "/tmp"}), path), 404)


def test_health_metrics_and_request_id(gateway: Running) -> None:
    gateway.client().chat.completions.create(model="empathy", messages=MSG, max_tokens=1)
    list(gateway.client().chat.completions.create(model="base", messages=MSG, max_tokens=2, stream=True))
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["status"] == "ok" and health["engines"][0]["supervised"] is True
    resp = httpx.get(f"{gateway.url}/metrics", headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    text = resp.text
    for name in ("empathy_requests_total", "empathy_request_latency_seconds_bucket",
                 "empathy_ttft_seconds_bucket", "empathy_router_weight_bucket",
                 "empathy_engine_restarts_total", "empathy_upstream_up"):
        assert name in text
    assert 'empathy_ttft_seconds_count{arm="",model="base"}' in text


def test_dead_upstream_gives_503_fast(tmp_path: Path, tiny_artifacts: Path) -> None:
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[f"http://127.0.0.1:{free_port()}"])
    with serve_app(create_app(settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=5)
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as err:
                client.chat.completions.create(model="base", messages=MSG, stream=stream)
            assert err.value.status_code == 503 and err.value.body["code"] == "engine_unavailable"
        assert httpx.get(f"{url}/health").status_code == 503


def test_dead_replica_is_taken_out(tmp_path: Path, tiny_artifacts: Path, vllm_server: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[dead, f"{vllm_server}/v1"])
    with serve_app(create_app(settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
        for _ in range(4):
            assert client.chat.completions.create(model="base", messages=MSG, max_tokens=1).choices
        engines = {e["url"]: e["healthy"] for e in httpx.get(f"{url}/health").json()["engines"]}
        assert engines == {dead: False, vllm_server: True}
