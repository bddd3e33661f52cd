"""Refusals and failures in the OpenAI error shape: auth, bad input, dead upstreams; health and metrics."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from serve.app import create_app
from tests.conftest import free_port
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running, make_settings, serve_app
from tests.serve.own_serve import scrape, total

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
    """/metrics counts what happened: the deltas of the request, error, latency, TTFT and router counters
    over a few known requests (a new conversation each run, so the router decides exactly once)."""
    before = scrape(gateway.url)
    fresh = [{"role": "user", "content": f"hello, this is run {uuid.uuid4().hex}"}]
    gateway.client().chat.completions.create(model="empathy", messages=fresh, max_tokens=1)
    list(gateway.client().chat.completions.create(model="base", messages=MSG, max_tokens=2, stream=True))
    for body in ('{"model": "base", "messages": [], "max_tokens": 1}', "{not json",
                 json.dumps({"model": "base", "messages": MSG, "n": 0})):
        assert _post(gateway, body).status_code == 400
    assert _post(gateway, json.dumps({"model": "no-such-model", "messages": MSG})).status_code == 404
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["status"] == "ok" and health["engines"][0]["supervised"] is True
    resp = httpx.get(f"{gateway.url}/metrics", headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    after = scrape(gateway.url)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("empathy_requests_total", model="empathy", status="200") == 1
    assert delta("empathy_requests_total", model="base", status="200") == 1
    assert delta("empathy_request_latency_seconds_count", model="base") == 1
    assert delta("empathy_ttft_seconds_count", model="base") == 1  # streamed: a first token
    assert delta("empathy_ttft_seconds_count", model="empathy") == 0  # not streamed: no TTFT
    assert delta("empathy_upstream_ttft_seconds_count") == 1  # the same first token, timed from vLLM's side
    assert 0 < delta("empathy_upstream_ttft_seconds_sum") <= delta("empathy_ttft_seconds_sum", model="base")
    assert delta("empathy_router_weight_count", source="router") == 1
    assert delta("empathy_errors_total", code="400") == 3
    assert delta("empathy_errors_total", code="404") == 1
    assert delta("empathy_errors_total") == 4  # nothing else failed
    assert total(after, "empathy_upstream_up") == 1  # the one engine, healthy


def test_dead_upstream_gives_503_fast(tmp_path: Path, tiny_artifacts: Path) -> None:
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[f"http://127.0.0.1:{free_port()}"])
    with serve_app(create_app(settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=5)
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as err:
                client.chat.completions.create(model="base", messages=MSG, stream=stream)
            assert err.value.status_code == 503 and err.value.body["code"] == "engine_unavailable"
            assert int(err.value.response.headers["retry-after"]) > 0  # the SDK waits, then retries
        assert httpx.get(f"{url}/health").status_code == 503
        assert total(scrape(url), "empathy_errors_total", code="503") == 2


def test_dead_replica_is_taken_out(tmp_path: Path, tiny_artifacts: Path, vllm_server: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[dead, f"{vllm_server}/v1"])
    with serve_app(create_app(settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
        for _ in range(4):
            assert client.chat.completions.create(model="base", messages=MSG, max_tokens=1).choices
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}  # engine URLs are shown to the admin only
        health = httpx.get(f"{url}/health", headers=admin).json()
        engines = {e["url"]: e["healthy"] for e in health["engines"]}
        assert engines == {dead: False, vllm_server: True}


def test_upstream_timeout_is_504(tmp_path: Path, tiny_artifacts: Path, vllm_server: str) -> None:
    """A reply that takes longer than EMPATHY_UPSTREAM_TIMEOUT (here 0.05 s; 300 tokens take vLLM seconds
    on this CPU) is a 504 in the OpenAI shape, counted as an error."""
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[f"{vllm_server}/v1"], upstream_timeout=0.05)
    with serve_app(create_app(settings)) as url:
        body = {"model": "base", "messages": MSG, "max_tokens": 300, "ignore_eos": True}
        resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120,
                          headers={"authorization": f"Bearer {API_KEY}"})
        assert _error(resp, 504)["code"] == "upstream_timeout"
        assert total(scrape(url), "empathy_errors_total", code="504") == 1
        assert httpx.get(f"{url}/health").status_code == 200  # a slow reply does not take the engine out


def test_admin_endpoints_without_an_admin_key_are_403(tmp_path: Path, tiny_artifacts: Path,
                                                      vllm_server: str) -> None:
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[f"{vllm_server}/v1"], admin_key=None)
    assert settings.admin_key is None
    exp = {"name": "no-admin", "arms": [{"name": "a", "model": "base"}]}
    headers = {"authorization": f"Bearer {API_KEY}"}
    with serve_app(create_app(settings)) as url, \
            httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        for method, path, body in (("POST", "/admin/reload", None), ("POST", "/v1/experiments", exp),
                                   ("PUT", "/v1/experiments/no-admin", exp),
                                   ("PATCH", "/v1/experiments/no-admin", {"active": False})):
            resp = http.request(method, path, json=body)
            assert _error(resp, 403)["code"] == "admin_disabled", (method, path)
        assert http.get("/v1/experiments").json()["data"] == []  # nothing was created


def test_route_sources_fixed_and_default(tmp_path: Path, tiny_artifacts: Path, vllm_server: str) -> None:
    """No router artifact in data_dir: `empathy` uses EMPATHY_DEFAULT_BLEND (source=default); a named
    model is source=fixed, with its place on the blend axis when it has one."""
    settings = make_settings(tmp_path, tiny_artifacts, upstreams=[f"{vllm_server}/v1"], default_blend=0.75)
    app = create_app(settings)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        assert app.state.gateway.router is None
        blends = app.state.gateway.catalog.blends
        expected = {"empathy": ("default", 0.75, blends[0.75]),
                    "empathy-sensibility": ("fixed", 1.0, "empathy-sensibility"),
                    "empathy-rationality": ("fixed", 0.0, "empathy-rationality"),
                    "base": ("fixed", None, "base")}
        for model, (source, blend, adapter) in expected.items():
            raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG, max_tokens=1)
            field = raw.parse().model_extra["empathy"]
            assert (field["source"], field["blend"], field["adapter"]) == (source, blend, adapter), model
            assert raw.parse().model == adapter  # what vLLM actually ran
            assert f"source={source}" in raw.headers["x-empathy-route"]
