"""The session's real vLLM server answers the OpenAI API for the base model and its LoRA modules."""

from __future__ import annotations

import pytest
from openai import OpenAI


@pytest.mark.slow
def test_session_engine_serves_base_and_adapters(vllm_server: str) -> None:
    client = OpenAI(base_url=f"{vllm_server}/v1", api_key="EMPTY")
    names = {model.id for model in client.models.list().data}
    assert {"base", "empathy-sensibility", "empathy-rationality"} <= names
    for model in ("base", "empathy-sensibility"):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "I lost my job today."}], max_tokens=8,
            temperature=0,
        )
        assert reply.choices[0].message.content is not None
