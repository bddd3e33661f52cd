"""vLLM's CPU LoRA kernels read a no-LoRA row's adapter index -1 as the last slot: a base-model request in a
batch with LoRA requests got an adapter. The engine serves `base` as an all-zero LoRA; these tests hold it to
giving the base model's numbers alone and in a mixed batch, on the session's real engine."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai import OpenAI

PROMPT = "I failed my exam today and I feel terrible. My parents will be so disappointed in me."
TOLERANCE = 1e-3  # fp32 batch-composition noise is ~1e-5 on this prompt; an adapter moves it by far more


def prompt_logprob(client: OpenAI, model: str) -> float:
    """Sum of the log-probabilities vLLM returns for PROMPT's positions (`prompt_logprobs=0`: the prompt
    token, plus the top token where it differs): a fingerprint of the model's weights on that prompt."""
    reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=1, temperature=0.0,
                                      extra_body={"prompt_logprobs": 0})
    entries = (reply.choices[0].model_extra or {})["prompt_logprobs"]
    return sum(value["logprob"] for entry in entries if entry for value in entry.values())


@pytest.fixture(scope="module")
def client(vllm_server: str) -> OpenAI:
    return OpenAI(base_url=f"{vllm_server}/v1", api_key="EMPTY", max_retries=0)


def test_base_is_served_as_a_zero_lora_that_equals_the_base_model(client: OpenAI,
                                                                   tiny_adapters: dict[str, Path]) -> None:
    served = {m.id for m in client.models.list().data}
    assert {"base", "base-no-lora", *tiny_adapters} <= served
    assert prompt_logprob(client, "base") == pytest.approx(prompt_logprob(client, "base-no-lora"),
                                                           abs=TOLERANCE)


def test_base_in_a_mixed_lora_batch_gets_no_adapter(client: OpenAI, tiny_adapters: dict[str, Path]) -> None:
    names = ["base", *tiny_adapters]
    alone = {name: prompt_logprob(client, name) for name in names}
    # The check can only fail if some adapter moves the numbers by more than the tolerance.
    assert max(abs(alone[name] - alone["base"]) for name in tiny_adapters) > 10 * TOLERANCE
    # More adapters than the engine's slots (7 + the zero one for 4), three requests each, all at once.
    with ThreadPoolExecutor(3 * len(names)) as pool:
        mixed = list(pool.map(lambda name: (name, prompt_logprob(client, name)), names * 3))
    for name, value in mixed:
        assert value == pytest.approx(alone[name], abs=TOLERANCE), name
