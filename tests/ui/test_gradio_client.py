"""The chat endpoint through `gradio_client` (api_name pinned to /chat), over the real gateway and vLLM."""

from __future__ import annotations

import pytest

from tests.ui.conftest import RunningGateway

pytestmark = pytest.mark.slow


def test_chat_endpoint_streams_a_routed_reply(gateway: RunningGateway) -> None:
    from gradio_client import Client

    from ui.format import message_text

    client = Client(f"{gateway.url}/", verbose=False)
    history, textbox, *_ = client.predict("Hello, I had a rough day.", [], api_name="/chat")
    assert [m["role"] for m in history] == ["user", "assistant"]
    reply = message_text(history[-1])
    assert "blend:" in reply and "⚠️" not in reply
    assert textbox == ""
