"""Streaming replies into Gradio chat histories: one model, or two side by side at once."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from ui.client import GatewayClient
from ui.format import message_text, reply_markdown, to_openai

Messages = list[dict[str, Any]]
Pair = tuple[Messages, Messages]
CompletionIds = dict[int, str]  # chatbot message index -> completion id (for feedback)
Request = tuple[str, dict[str, Any] | None]  # model, extra_body


def new_session_id() -> str:
    return f"ui-{uuid.uuid4().hex[:16]}"


def plain(history: Messages) -> Messages:
    """Gradio's normalised messages -> simple `{"role", "content": str}` dicts it accepts back."""
    return [{"role": m["role"], "content": message_text(m)} for m in history if m.get("role")]


def stream_reply(client: GatewayClient, history: Messages, session_id: str, ids: CompletionIds,
                 model: str = "empathy", extra_body: dict[str, Any] | None = None,
                 with_caption: bool = True) -> Iterator[Messages]:
    """Append an assistant message to `history` and grow it chunk by chunk; record its completion id."""
    messages = to_openai(history)
    history = [*history, {"role": "assistant", "content": "…"}]
    for reply in client.stream_chat(model, messages, session_id=session_id, extra_body=extra_body):
        history[-1] = {"role": "assistant", "content": reply_markdown(reply, with_caption)}
        if reply.done and reply.completion_id and not reply.error:
            ids[len(history) - 1] = reply.completion_id
        yield history


def stream_two(client: GatewayClient, requests: tuple[Request, Request], histories: Pair, session_id: str,
               ids: tuple[CompletionIds, CompletionIds], with_caption: bool = True) -> Iterator[Pair]:
    """Stream two replies at once (one thread each); yield both histories whenever either grows."""
    updates: queue.Queue[tuple[int, Messages | None]] = queue.Queue()

    def run(side: int) -> None:
        model, extra = requests[side]
        history, side_ids = histories[side], ids[side]
        for update in stream_reply(client, history, session_id, side_ids, model, extra, with_caption):
            updates.put((side, update))
        updates.put((side, None))

    current = list(histories)
    for side in (0, 1):
        threading.Thread(target=run, args=(side,), daemon=True).start()
    running = 2
    while running:
        side, update = updates.get()
        if update is None:
            running -= 1
            continue
        current[side] = update
        yield current[0], current[1]
