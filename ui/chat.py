"""Chat tab: streaming chat with the routed model `empathy`, the blend under each reply, thumbs up/down."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import gradio as gr

from ui.client import GatewayClient, GatewayError
from ui.format import message_text
from ui.streams import CompletionIds, Messages, new_session_id, plain, stream_reply

log = logging.getLogger("empathy.ui")
PLACEHOLDER = ("**Talk about how you feel.** Every answer comes from a blend of two experts, one for "
               "*sensibility* (warmth, validation) and one for *rationality* (perspective, suggestions); "
               "the router picks the blend shown under each reply.")


def make_handlers(client: GatewayClient) -> dict[str, Any]:
    """The tab's event functions, closed over one client."""

    def chat(message: str, history: Messages, session_id: str,
             ids: CompletionIds) -> Iterator[tuple[Messages, str, str, CompletionIds]]:
        session_id = session_id or new_session_id()
        history = [*plain(history)]
        if not message.strip():
            yield history, "", session_id, ids
            return
        history.append({"role": "user", "content": message})
        yield history, "", session_id, ids
        for update in stream_reply(client, history, session_id, ids):
            yield update, "", session_id, ids

    def retry(history: Messages, session_id: str, ids: CompletionIds,
              data: gr.RetryData) -> Iterator[tuple[Messages, CompletionIds]]:
        # up to and including the user message being retried
        kept = plain(history)[: cast(int, data.index) + 1]
        yield kept, ids
        for update in stream_reply(client, kept, session_id or new_session_id(), ids):
            yield update, ids

    def undo(history: Messages, data: gr.UndoData) -> tuple[Messages, str]:
        return plain(history)[: cast(int, data.index)], message_text({"content": data.value})

    def clear() -> tuple[Messages, str, CompletionIds, str]:
        return [], new_session_id(), {}, ""

    def like(ids: CompletionIds, data: gr.LikeData) -> str:
        index = data.index if isinstance(data.index, int) else data.index[0]
        completion_id = ids.get(index)
        if completion_id is None or not isinstance(data.liked, bool):
            return "This reply cannot be rated (it failed or is still streaming)."
        try:
            client.send_feedback({"type": "rating", "completion_id": completion_id, "value": int(data.liked)})
        except GatewayError as exc:
            log.warning("chat: feedback not stored (%s)", exc)
            return f"⚠️ Feedback not stored: {exc}"
        thumb = "👍" if data.liked else "👎"
        return f"{thumb} Thanks, your feedback on this reply is stored."

    return {"chat": chat, "retry": retry, "undo": undo, "clear": clear, "like": like}


def build_chat_tab(client: GatewayClient) -> None:
    """Render the tab inside the current Blocks context and wire its events."""
    handlers = make_handlers(client)
    session = gr.State("")
    ids = gr.State({})
    chatbot = gr.Chatbot(label="Empathy (routed)", height=520, placeholder=PLACEHOLDER,
                         elem_id="chat-bot", buttons=["copy"], layout="bubble")
    with gr.Row(equal_height=True):
        box = gr.Textbox(placeholder="Tell me what's on your mind…", show_label=False, scale=8,
                         elem_id="chat-input", autofocus=True, submit_btn=True)
        new = gr.Button("New conversation", scale=1, variant="secondary", elem_id="chat-new")
    status = gr.Markdown("", elem_id="chat-status")
    box.submit(handlers["chat"], [box, chatbot, session, ids], [chatbot, box, session, ids], api_name="chat")
    chatbot.retry(handlers["retry"], [chatbot, session, ids], [chatbot, ids], api_visibility="private")
    chatbot.undo(handlers["undo"], [chatbot], [chatbot, box], api_visibility="private")
    chatbot.clear(handlers["clear"], None, [chatbot, session, ids, status], api_visibility="private")
    new.click(handlers["clear"], None, [chatbot, session, ids, status], api_visibility="private")
    chatbot.like(handlers["like"], [ids], [status], api_visibility="private")
