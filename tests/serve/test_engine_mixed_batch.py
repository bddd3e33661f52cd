"""vLLM's CPU LoRA kernels read a no-LoRA row's adapter index -1 as the last slot: a base-model request in a
batch with LoRA requests got an adapter. Our vLLM plugin (serve/vllm_plugin.py) masks those rows; this test
holds the session's real engine to the base model's numbers alone and in a mixed batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai import OpenAI

pytestmark = pytest.mark.slow  # the session's vLLM engine
PROMPT = "I failed my exam today and I feel terrible. My parents will be so disappointed in me."
TOLERANCE = 1e-3  # fp32 batch-composition noise is ~1e-5 on this prompt; an adapter moves it by far more


def prompt_logprob(client: OpenAI, model: str) -> float:
    """Sum of the log-probabilities vLLM returns for PROMPT's positions (`prompt_logprobs=0`: the prompt
    token, plus the top token where it differs) and for 8 greedy tokens after it: a fingerprint of the
    model's weights in prefill and in decode (vLLM's CPU ops run different code for the two)."""
    reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0.0, logprobs=0,
                                      extra_body={"prompt_logprobs": 0, "ignore_eos": True})
    choice = reply.choices[0]
    entries = (choice.model_extra or {})["prompt_logprobs"]
    generated = choice.logprobs.token_logprobs if choice.logprobs and choice.logprobs.token_logprobs else []
    assert len(generated) == 8
    return sum(value["logprob"] for entry in entries if entry for value in entry.values()) + sum(generated)


@pytest.fixture(scope="module")
def client(vllm_server: str) -> OpenAI:
    return OpenAI(base_url=f"{vllm_server}/v1", api_key="EMPTY", max_retries=0)


def test_base_in_a_mixed_lora_batch_gets_no_adapter(client: OpenAI, tiny_adapters: dict[str, Path]) -> None:
    names = ["base", *tiny_adapters]
    alone = {name: prompt_logprob(client, name) for name in names}
    # The check can only fail if some adapter moves the numbers by more than the tolerance.
    assert max(abs(alone[name] - alone["base"]) for name in tiny_adapters) > 10 * TOLERANCE
    # More adapters (7) than the engine has slots (4), so the last slot is in use; three requests each.
    with ThreadPoolExecutor(3 * len(names)) as pool:
        mixed = list(pool.map(lambda name: (name, prompt_logprob(client, name)), names * 3))
    for name, value in mixed:
        assert value == pytest.approx(alone[name], abs=TOLERANCE), name
