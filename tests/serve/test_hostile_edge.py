"""Hostile input at the edge (issue 13): no engine needed, the gateway refuses before anything reaches vLLM.

The gateway here fronts an upstream URL where nothing listens: every request that got past validation
would answer 503, so a 400/408/413 proves the edge refused it. Each test is one failure of the issue.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from serve.app import create_app
from tests.conftest import free_port
from tests.serve.conftest import ADMIN_KEY, API_KEY, Running, make_settings, serve_app

AUTH = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
MSG = [{"role": "user", "content": "hello"}]
BASE = '{"model": "base", "messages": [{"role": "user", "content": "hi"}], '


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("edge")
    (tmp / "data").mkdir()
    settings = make_settings(tmp, tmp / "data", upstreams=[f"http://127.0.0.1:{free_port()}"],
                             body_timeout=1.0, max_json_depth=32, max_n=4, max_tokens_cap=256,
                             max_prompts=5)
    app = create_app(settings)
    with serve_app(app) as url:
        yield Running(url, app)


def _post(edge: Running, body: str | bytes, path: str = "/v1/chat/completions",
          headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(f"{edge.url}{path}", content=body, headers=headers, timeout=30)


def _error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if code is not None:
        assert err["code"] == code, err
    return err


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "base", "messages": MSG, **fields}


# ---- 1. one request must do no lasting damage -------------------------------------------------------

def test_surrogate_model_name_does_not_break_metrics(edge: Running) -> None:
    body = '{"model": "x\\ud800", "messages": [{"role": "user", "content": "hi"}]}'
    _error(_post(edge, body), 400, "invalid_unicode")
    assert httpx.get(f"{edge.url}/metrics").status_code == 200


def test_unknown_model_names_share_one_label(edge: Running) -> None:
    with httpx.Client(base_url=edge.url, headers=AUTH, timeout=30) as client:
        for i in range(300):
            _error(client.post("/v1/chat/completions", json=_chat(model=f"nope-{i}")), 404, "model_not_found")
    err = _error(_post(edge, json.dumps(_chat(model="y" * 1_000_000))), 404, "model_not_found")
    assert len(err["message"]) < 3000
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert "nope-" not in metrics and "yyyy" not in metrics and len(metrics) < 20_000
    assert 'empathy_errors_total{code="404",model="other"} 301.0' in metrics


def test_bad_experiment_text_is_refused_and_listing_survives(edge: Running) -> None:
    bad = '{"name": "exp-u", "description": "\\ud800", "arms": [{"name": "a", "model": "base"}]}'
    _error(_post(edge, bad, "/v1/experiments", ADMIN), 400, "invalid_unicode")
    for weight in ("Infinity", "NaN", "1e999"):
        body = '{"name": "exp-w", "arms": [{"name": "a", "model": "base", "weight": ' + weight + "}]}"
        _error(_post(edge, body, "/v1/experiments", ADMIN), 400, "invalid_number")
    body = json.dumps({"name": "exp-w", "arms": [{"name": "a", "model": "base", "weight": 0}]})
    _error(_post(edge, body, "/v1/experiments", ADMIN), 400)
    listed = httpx.get(f"{edge.url}/v1/experiments", headers=AUTH)
    assert listed.status_code == 200 and listed.json()["data"] == []


def test_any_stored_row_keeps_listings_up_and_delete_removes_it(edge: Running) -> None:
    store = edge.gateway.store
    with store.engine.begin() as conn:  # rows another version, or a hand, could have written
        for name, definition in (("broken-a", '{"name": "broken-a", "description": "\\ud800", "arms": '
                                  '[{"name": "a", "model": "base"}]}'),
                                 ("broken-b", '{"name": "broken-b", "arms": [{"name": "a", "model": "base",'
                                  ' "weight": null}]}'),
                                 ("broken-c", '[1, 2]')):
            conn.execute(text("INSERT INTO serve_experiments (name, definition, updated) VALUES "
                              "(:n, :d, 0)"), {"n": name, "d": definition})
    ok = json.dumps({"name": "fine", "arms": [{"name": "a", "model": "base"}]})
    assert _post(edge, ok, "/v1/experiments", ADMIN).status_code == 200
    listed = httpx.get(f"{edge.url}/v1/experiments", headers=AUTH)
    assert listed.status_code == 200 and [e["name"] for e in listed.json()["data"]] == ["fine"]
    for name in ("broken-a", "broken-b", "broken-c", "fine"):
        resp = httpx.delete(f"{edge.url}/v1/experiments/{name}", headers=ADMIN)
        assert resp.json() == {"name": name, "deleted": True}
    _error(httpx.delete(f"{edge.url}/v1/experiments/fine", headers=ADMIN), 404, "experiment_not_found")
    _error(httpx.delete(f"{edge.url}/v1/experiments/fine", headers=AUTH), 403, "not_admin")
    assert store.experiments() == []


# ---- 3. bad input is 400, never 500 -----------------------------------------------------------------

@pytest.mark.parametrize(("raw", "code"), [
    (BASE + '"temperature": NaN}', "invalid_number"),
    (BASE + '"top_p": -Infinity}', "invalid_number"),
    (BASE + '"seed": 1e400}', "invalid_number"),
    ('{"model": "empathy", "messages": [{"role": "user", "content": "a\\udc00b"}]}', "invalid_unicode"),
    (BASE + '"stop": ["\\ud800"]}',
     "invalid_unicode"),
    (BASE + '"response_format": '
     '{"type": "json_schema", "json_schema": {"name": "\\udfff"}}}', "invalid_unicode"),
    (BASE + '"user": "\\ud800"}', "invalid_unicode"),
    (BASE + '"\\ud800": 1}', "invalid_unicode"),
    ("[" * 1000 + "]" * 1000, "too_deep"),
    ('{"model": "base", "messages": ' + "[" * 40 + "]" * 40 + "}", "too_deep"),
    (BASE + '"n": 5}', "over_limit"),
    (BASE + '"max_tokens": 257}', "over_limit"),
    (BASE + '"max_completion_tokens": 10000}',
     "over_limit"),
    ('{"model": "base", "prompt": ["a", "b", "c", "d", "e", "f"]}', "over_limit"),
    ('{"model": "base", "prompt": "a", "best_of": 9}', "over_limit"),
    (BASE + '"temperature": "hot"}',
     "invalid_value"),
])
def test_bad_input_is_400(edge: Running, raw: str, code: str) -> None:
    path = "/v1/completions" if '"prompt"' in raw else "/v1/chat/completions"
    _error(_post(edge, raw, path), 400, code)


def test_surrogate_prompt_and_feedback_are_400(edge: Running) -> None:
    _error(_post(edge, '{"model": "base", "prompt": "\\ud800"}', "/v1/completions"), 400, "invalid_unicode")
    rating = '{"type": "rating", "completion_id": "\\ud800", "value": 1}'
    _error(_post(edge, rating, "/v1/feedback"), 400, "invalid_unicode")
    _error(_post(edge, '{"type": "rating", "completion_id": "x", "value": NaN}', "/v1/feedback"), 400)


def test_unexpected_error_keeps_the_connection(edge: Running, tmp_path: Path) -> None:
    """A real fault (a table of the store vanished) answers 500 in the OpenAI shape, and the same keep-alive
    connection serves the next request."""
    store = edge.gateway.store
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE serve_completions RENAME TO serve_completions_gone"))
    try:
        port = int(edge.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/feedback", body='{"type": "rating", "completion_id": "c", "value": 1}',
                     headers=AUTH)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 500 and body["error"]["code"] == "internal_error"
        assert (resp.getheader("connection") or "").lower() != "close"
        sock = conn.sock
        conn.request("GET", "/health")
        again = conn.getresponse()
        again.read()
        assert again.status in (200, 503) and conn.sock is sock  # same socket: not dropped, not reopened
        conn.close()
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE serve_completions_gone RENAME TO serve_completions"))


def _raw(edge: Running, head: bytes, body: bytes, wait: float = 15.0) -> tuple[bytes, float]:
    """Send `head` + `body` on a raw socket and keep it open: what comes back, and after how long."""
    port = int(edge.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        started = time.monotonic()
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data, time.monotonic() - started


def test_stalled_body_is_408(edge: Running) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + API_KEY.encode() + b"\r\ncontent-length: 3000\r\n\r\n")
    data, took = _raw(edge, head, b'{"model": ')
    assert data.startswith(b"HTTP/1.1 408") and b"request_timeout" in data and took < 5
    assert b"connection: close" in data.lower()


def test_short_body_declared_huge_is_413_not_a_hang(edge: Running) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + API_KEY.encode() + b"\r\ncontent-length: 3000000\r\n\r\n")
    data, took = _raw(edge, head, b'{"model": ')
    assert data.startswith(b"HTTP/1.1 413") and b"request_too_large" in data and took < 5


# ---- 7. what the gateway shows, and to whom ---------------------------------------------------------

def test_health_and_metrics_hide_engine_pid_and_url(edge: Running) -> None:
    upstream = edge.gateway.settings.upstreams[0]
    health = httpx.get(f"{edge.url}/health")
    assert upstream not in health.text and "pid" not in health.json()["engines"][0]
    assert health.json()["engines"][0]["engine"] == 0
    assert upstream not in httpx.get(f"{edge.url}/metrics").text
    private = httpx.get(f"{edge.url}/health", headers=ADMIN).json()
    assert private["engines"][0]["url"] == upstream


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/metrics"])
async def test_docs_and_metrics_are_open_on_loopback_only(edge: Running, path: str) -> None:
    app = edge.app
    for host, headers, status in (("127.0.0.1", {}, 200), ("::1", {}, 200), ("10.1.2.3", {}, 401),
                                  ("10.1.2.3", {"authorization": "Bearer wrong"}, 401),
                                  ("10.1.2.3", {"authorization": f"Bearer {API_KEY}"}, 200)):
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            resp = await client.get(path, headers=headers)
        assert resp.status_code == status, (host, headers, resp.text)


def test_openapi_describes_every_body(edge: Running) -> None:
    spec = httpx.get(f"{edge.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            ok = op["responses"]["200"]["content"]
            assert any("schema" in media for media in ok.values()), (method, path)
            if method in ("post", "put", "patch") and path != "/admin/reload":
                assert op["requestBody"]["content"]["application/json"]["schema"], (method, path)
    chat = schemas["ChatCompletionRequest"]
    assert chat["additionalProperties"] is True and "empathy" in chat["properties"]
    assert "empathy" in schemas["ChatCompletion"]["properties"]
    assert {"Experiment", "Rating", "Pairwise", "ModelList", "ErrorResponse"} <= set(schemas)
