"""The UI survives an engine that is down: a clear sentence in the chat, never a stack trace."""

from __future__ import annotations

import pytest

from tests.ui.conftest import RunningGateway
from ui.client import RESTARTING

pytestmark = pytest.mark.slow


def _last_assistant(history: list[dict]) -> str:
    from ui.format import message_text

    return message_text([m for m in history if m["role"] == "assistant"][-1])


def test_chat_says_restarting_when_engine_is_down(down_gateway: RunningGateway) -> None:
    from gradio_client import Client

    client = Client(f"{down_gateway.url}/", verbose=False)
    history, *_ = client.predict("I feel lonely tonight.", [], api_name="/chat")
    text = _last_assistant(history)
    assert RESTARTING in text and "Traceback" not in text


def test_arena_falls_back_without_experiments(down_gateway: RunningGateway) -> None:
    from ui.arena import new_battle
    from ui.client import GatewayClient

    battle = new_battle(GatewayClient(f"{down_gateway.url}/v1", "EMPTY"))
    assert battle.experiment is None and battle.left.model != battle.right.model
