"""The committed release (release/, made by the `standard` profile) is installed with its hashes checked and
served by the gateway with its own vLLM child, as `empathy up` does on a fresh clone: routed chats answer with
a blend of the release's grid chosen by the release's router. CI never retrains it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.conftest import API_KEY, make_settings, serve_app
from training.release import EXPERTS, default_release_dir, install_release, verify_release

pytestmark = pytest.mark.slow
RELEASE = default_release_dir()


@pytest.fixture(scope="module")
def release_gateway(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Iterator[str]:
    from serve.app import create_app

    tmp = tmp_path_factory.mktemp("release")
    data_dir = tmp / "data"
    install_release(RELEASE, data_dir, str(default_model_dir), [0.0, 0.25, 0.5, 0.75, 1.0])
    settings = make_settings(tmp, data_dir, base_model=str(default_model_dir), vllm_port=free_port(),
                             moe_serve=False)
    with serve_app(create_app(settings)) as url:
        deadline = time.monotonic() + 600
        while httpx.get(f"{url}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the release's engine did not become healthy in 10 minutes"
            time.sleep(2)
        yield url


def test_release_matches_its_manifest() -> None:
    manifest = verify_release(RELEASE)
    assert manifest["bytes"] <= 25 * 2**20 and manifest["profile"] == "standard"
    assert {f"experts/{e}/adapter_model.safetensors" for e in EXPERTS} <= set(manifest["files"])
    assert manifest["eval_table"] and manifest["inputs_sha256"] and len(manifest["commit"]) == 40


def chat(url: str, model: str, text: str) -> tuple[dict[str, Any], httpx.Response]:
    response = httpx.post(f"{url}/v1/chat/completions", timeout=300,
                          headers={"authorization": f"Bearer {API_KEY}"},
                          json={"model": model, "max_tokens": 24, "temperature": 0,
                                "messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200, response.text
    return response.json(), response


def test_release_is_served_and_routed(release_gateway: str) -> None:
    grid = json.loads((RELEASE / "router" / "router.json").read_text())["grid"]
    body, response = chat(release_gateway, "empathy", "My grandmother passed away last night.")
    assert body["empathy"]["source"] == "router" and body["empathy"]["blend"] in grid
    assert "source=router" in response.headers["x-empathy-route"]
    assert body["choices"][0]["message"]["content"].strip()
    replies = {m: chat(release_gateway, m, "I failed my exam today.")[0]["choices"][0]["message"]["content"]
               for m in ("base", "empathy-sensibility", "empathy-rationality")}
    assert all(r.strip() for r in replies.values())
    assert len(set(replies.values())) > 1, replies  # the experts change what the base model says
