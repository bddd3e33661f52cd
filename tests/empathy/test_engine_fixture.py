"""The session's real vLLM server answers the OpenAI API for the base model and its LoRA modules."""

from __future__ import annotations

import pytest
from openai import OpenAI


@pytest.mark.slow
def test_session_engine_serves_base_and_adapters(vllm_server: str) -> None:
    client = OpenAI(base_url=f"{vllm_server}/v1", api_key="EMPTY", max_retries=0, timeout=120)
    names = {model.id for model in client.models.list().data}
    assert {"base", "empathy-sensibility", "empathy-rationality"} <= names
    first: dict[str, dict[str, float]] = {}
    for model in ("base", "empathy-sensibility"):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "I lost my job today."}], max_tokens=8,
            temperature=0, logprobs=True, top_logprobs=5, extra_body={"ignore_eos": True},
        )
        choice = reply.choices[0]
        assert reply.model == model and reply.usage.completion_tokens == 8
        assert choice.finish_reason == "length"
        assert isinstance(choice.message.content, str) and choice.message.content
        first[model] = {t.token: t.logprob for t in choice.logprobs.content[0].top_logprobs}
    # The adapter is applied: its next-token distribution is not the base model's.
    shared = first["base"].keys() & first["empathy-sensibility"].keys()
    moved = [abs(first["base"][t] - first["empathy-sensibility"][t]) for t in shared]
    assert first["base"].keys() != first["empathy-sensibility"].keys() or max(moved) > 1e-2
