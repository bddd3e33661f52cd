"""The completion routes are answered by the gateway's outermost middleware, past FastAPI's layers: their
errors keep the OpenAI shape and the request id, other methods still get the app's 405, and the OpenAPI
schema still lists them. Feedback on an id that another gateway on the same database writes a moment later
is recorded (it looks once more after EMPATHY_COMPLETION_WRITE_DELAY)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from serve.app import create_app
from serve.store import Completion
from tests.serve.conftest import API_KEY, make_settings, serve_app

AUTH = {"authorization": f"Bearer {API_KEY}"}
CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_completion_routes_answered_directly_keep_the_gateway_s_errors(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    settings = make_settings(tmp_path, tmp_path / "data", upstreams=["http://127.0.0.1:9"])
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        bad = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": -1}, headers=AUTH)
        assert _error(bad, 400)["param"] == "max_tokens" and bad.headers["x-request-id"].startswith("req-")
        assert _error(client.post("/v1/completions", json={"model": "base", "prompt": "hi"}), 401)[
            "code"] == "invalid_api_key"
        down = client.post("/v1/chat/completions", json=CHAT, headers={**AUTH, "x-request-id": "mine"})
        assert _error(down, 503)["code"] == "engine_unavailable" and down.headers["x-request-id"] == "mine"
        _error(client.get("/v1/chat/completions", headers=AUTH), 405)
        paths = client.get("/openapi.json").json()["paths"]
        assert "post" in paths["/v1/chat/completions"] and "post" in paths["/v1/completions"]


def test_feedback_finds_a_row_another_gateway_writes_a_moment_later(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    settings = make_settings(tmp_path, tmp_path / "data", upstreams=["http://127.0.0.1:9"],
                             completion_write_delay=1.0)
    app = create_app(settings)
    row = Completion(id="chatcmpl-elsewhere", model="base", adapter="base", blend=None, source="direct",
                     experiment=None, arm=None, subject="s", latency_ms=5.0, ttft_ms=1.0, stream=True)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30, headers=AUTH) as client:
        rating = {"type": "rating", "completion_id": row.id, "value": 1}
        assert _error(client.post("/v1/feedback", json={**rating, "completion_id": "never"}), 404)[
            "code"] == "completion_not_found"
        other_gateway = threading.Timer(0.3, app.state.gateway.store.add_completion, [row])
        other_gateway.start()
        resp = client.post("/v1/feedback", json=rating)
        other_gateway.join()
        assert resp.status_code == 200 and resp.json()["status"] == "recorded", resp.text
