"""The session's vLLM server loads and serves the trained experts and the blends built from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai import OpenAI

PROMPT = "<|im_start|>user\nI lost my job today.<|im_end|>\n<|im_start|>assistant\n"


def _first_logprobs(client: OpenAI, model: str) -> dict[str, float]:
    reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=1, temperature=0, logprobs=5)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.top_logprobs
    return dict(logprobs.top_logprobs[0])


@pytest.mark.slow
def test_engine_serves_experts_and_blends(vllm_server: str, tiny_artifacts: Path) -> None:
    index = json.loads((tiny_artifacts / "blends" / "index.json").read_text())
    blends = {entry["weight"]: entry["name"] for entry in index["blends"]}
    client = OpenAI(base_url=f"{vllm_server}/v1", api_key="EMPTY")
    served = {model.id for model in client.models.list().data}
    assert {"empathy-sensibility", "empathy-rationality", *blends.values()} <= served
    for model in ("empathy-rationality", blends[0.5]):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "I lost my job today."}], max_tokens=8,
            temperature=0, extra_body={"ignore_eos": True},
        )
        assert reply.model == model and reply.usage.completion_tokens == 8
        assert isinstance(reply.choices[0].message.content, str) and reply.choices[0].message.content
    # The middle of the grid is neither end: a blend that silently served one expert would fail here.
    middle = _first_logprobs(client, blends[0.5])
    for end in (blends[0.0], blends[1.0]):
        other = _first_logprobs(client, end)
        shared = middle.keys() & other.keys()
        assert middle.keys() != other.keys() or max(abs(middle[t] - other[t]) for t in shared) > 1e-3
    # The endpoints of the grid are the experts themselves: same next-token distribution through vLLM.
    for weight, expert in ((1.0, "empathy-sensibility"), (0.0, "empathy-rationality")):
        got, want = _first_logprobs(client, blends[weight]), _first_logprobs(client, expert)
        assert got.keys() == want.keys()
        assert max(abs(got[token] - want[token]) for token in want) < 1e-3
