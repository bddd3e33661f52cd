"""Per-model default sampling (issue 11, item 4): the gateway fills each sampling field a request leaves
out; the client's values always win; a request that sets only `temperature: 0` still gets the repetition
penalty."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from serve.app import create_app
from serve.sampling import defaults_for, with_defaults
from serve.settings import SamplingDefaults
from tests.conftest import free_port
from tests.serve.conftest import API_KEY, Running, make_settings, serve_app

MSG = [{"role": "user", "content": "My grandmother passed away last night. I keep picking up the phone."}]
DEFAULTS = SamplingDefaults()


def test_each_missing_field_is_filled() -> None:
    body = with_defaults({"model": "base"}, DEFAULTS)
    assert body == {"model": "base", "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.2,
                    "max_tokens": 160}


def test_the_clients_values_win() -> None:
    sent = {"model": "base", "temperature": 0.2, "top_p": 1.0, "repetition_penalty": 1.0, "max_tokens": 7}
    assert with_defaults(sent, DEFAULTS) == sent


def test_greedy_alone_still_gets_the_penalty() -> None:
    body = with_defaults({"model": "base", "temperature": 0}, DEFAULTS)
    assert body["temperature"] == 0 and body["repetition_penalty"] == 1.2 and body["max_tokens"] == 160


def test_null_is_left_out_and_max_completion_tokens_counts() -> None:
    body = with_defaults({"temperature": None, "max_completion_tokens": 9}, DEFAULTS)
    assert body["temperature"] == 0.7 and "max_tokens" not in body


def test_per_model_settings_override_field_by_field(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, tmp_path, model_sampling={
        "base": {"temperature": 0.3, "repetition_penalty": None}})
    base = defaults_for(settings, "base")
    assert (base.temperature, base.top_p, base.repetition_penalty, base.max_tokens) == (0.3, 0.9, None, 160)
    assert defaults_for(settings, "empathy") == DEFAULTS
    assert "repetition_penalty" not in with_defaults({"model": "base"}, base)


def test_defaults_must_fit_the_caps(tmp_path: Any) -> None:
    with pytest.raises(ValidationError, match="MAX_TOKENS_CAP"):
        make_settings(tmp_path, tmp_path, max_tokens_cap=100)
    with pytest.raises(ValidationError):
        make_settings(tmp_path, tmp_path, sampling_defaults={"temperature": float("nan")})


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("sampling")
    (tmp / "data").mkdir()
    settings = make_settings(tmp, tmp / "data", upstreams=[f"http://127.0.0.1:{free_port()}"],
                             model_sampling={"base": {"temperature": 0.3}})
    app = create_app(settings)
    with serve_app(app) as url:
        yield Running(url, app)


def test_models_list_their_defaults(listed: Running) -> None:
    models = {m.id: m.model_extra["sampling"] for m in listed.client().models.list().data}
    assert models["base"] == {**DEFAULTS.model_dump(), "temperature": 0.3}
    assert models["empathy"] == DEFAULTS.model_dump()


def max_ngram_repeats(text: str, n: int = 4) -> int:
    words = text.split()
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return max(grams.values(), default=0)


@pytest.mark.slow
def test_defaults_reach_vllm(gateway: Running, vllm_server: str) -> None:
    """Through the real engine: the gateway's greedy reply is vLLM's greedy reply with the default
    penalty and top_p; with no `max_tokens` a reply is capped at the default 160 tokens."""
    client = gateway.client(timeout=120)
    reply = client.chat.completions.create(model="base", messages=MSG, temperature=0, max_tokens=48)
    direct = httpx.post(f"{vllm_server}/v1/chat/completions", timeout=120, json={
        "model": "base", "messages": MSG, "temperature": 0, "max_tokens": 48, "top_p": 0.9,
        "repetition_penalty": 1.2}).json()
    plain = httpx.post(f"{vllm_server}/v1/chat/completions", timeout=120, json={
        "model": "base", "messages": MSG, "temperature": 0, "max_tokens": 48}).json()
    text = reply.choices[0].message.content
    assert text == direct["choices"][0]["message"]["content"]
    print(f"greedy with defaults: max 4-gram repeats {max_ngram_repeats(text)}; plain greedy: "
          f"{max_ngram_repeats(plain['choices'][0]['message']['content'])}")
    long = client.chat.completions.create(model="base", messages=MSG, extra_body={"ignore_eos": True})
    assert long.usage.completion_tokens == 160
    headers = {"authorization": f"Bearer {API_KEY}"}
    models = httpx.get(f"{gateway.url}/v1/models", headers=headers).json()["data"]
    assert all(m["sampling"]["repetition_penalty"] == 1.2 for m in models)
