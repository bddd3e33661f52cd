"""Kill the supervised vLLM child during a stream (runs last in this folder: it costs one restart)."""

from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest

from tests.serve.conftest import Running

pytestmark = pytest.mark.slow
MSG = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]


def test_engine_killed_mid_stream_is_restarted(gateway: Running, engine_supervisor: object) -> None:
    client = gateway.client(timeout=60)
    restarts = engine_supervisor.restarts
    stream = client.chat.completions.create(model="empathy", messages=MSG, max_tokens=900, stream=True,
                                            extra_body={"ignore_eos": True})
    received = 0
    with pytest.raises(openai.APIError) as err:
        for _ in stream:
            received += 1
            if received == 2:
                os.killpg(engine_supervisor.pid, signal.SIGKILL)
    assert "engine stopped mid-stream" in err.value.message
    assert 2 <= received < 900

    started = time.monotonic()  # meanwhile: a quick 503 in the OpenAI shape, never a hang
    with pytest.raises(openai.InternalServerError) as err:
        client.with_options(timeout=5).chat.completions.create(model="base", messages=MSG, max_tokens=1)
    assert err.value.status_code == 503 and time.monotonic() - started < 5

    deadline = time.monotonic() + 420
    while not engine_supervisor.ready and time.monotonic() < deadline:
        time.sleep(1)
    assert engine_supervisor.restarts == restarts + 1
    reply = client.chat.completions.create(model="empathy", messages=MSG, max_tokens=3)
    assert reply.choices[0].message.content is not None
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f"empathy_engine_restarts_total {float(restarts + 1)}" in metrics
