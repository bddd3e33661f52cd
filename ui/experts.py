"""Experts tab: chat with `base`, one expert or a hand-set blend, optionally two side by side."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ui.client import GatewayClient, GatewayError
from ui.format import pretty_name
from ui.streams import CompletionIds, Messages, Pair, Request, new_session_id, plain, stream_reply, stream_two

log = logging.getLogger("empathy.ui")
BLEND = "blend (slider)"
DEFAULT_CHOICES = ["base", "empathy-sensibility", "empathy-rationality", BLEND, "empathy"]


def request_for(choice: str, weight: float) -> Request:
    """A picked model -> (model, extra_body); the slider's weight only applies to the blend choice."""
    if choice == BLEND:
        return "empathy", {"empathy": {"blend": round(float(weight), 4)}}
    return choice, None


def label_for(choice: str, weight: float) -> str:
    if choice == BLEND:
        sens = round(weight * 100)
        return f"blend: {sens}% sensibility / {100 - sens}% rationality"
    return pretty_name(choice)


def model_choices(models: list[str]) -> list[str]:
    """Fixed names the gateway lists (in a useful order) plus the slider; experiment names are left out."""
    order = ["base", "empathy-sensibility", "empathy-rationality", "empathy-full", "empathy"]
    listed = [m for m in order if m in models] or [m for m in DEFAULT_CHOICES if m != BLEND]
    return [*listed[:-1], BLEND, listed[-1]] if listed[-1] == "empathy" else [*listed, BLEND]


def make_handlers(client: GatewayClient) -> dict[str, Any]:
    def send(message: str, left: Messages, right: Messages, pick_a: str, weight_a: float, pick_b: str,
             weight_b: float, compare: bool, session: str) -> Iterator[tuple[Any, ...]]:
        session = session or new_session_id()
        if not message.strip():
            yield left, right, "", session
            return
        turn = {"role": "user", "content": message}
        histories: Pair = ([*plain(left), turn], [*plain(right), turn] if compare else plain(right))
        yield (*histories, "", session)
        ids: tuple[CompletionIds, CompletionIds] = ({}, {})
        if not compare:
            model, extra = request_for(pick_a, weight_a)
            for update in stream_reply(client, histories[0], session, ids[0], model, extra):
                yield update, histories[1], "", session
            return
        requests = (request_for(pick_a, weight_a), request_for(pick_b, weight_b))
        for pair in stream_two(client, requests, histories, session, ids):
            yield (*pair, "", session)

    def refresh_choices() -> tuple[Any, Any]:
        try:
            choices = model_choices(client.models())
        except GatewayError as exc:
            log.warning("experts tab: model list unavailable (%s); offering the default models", exc)
            choices = DEFAULT_CHOICES
        return gr.update(choices=choices), gr.update(choices=choices)

    def clear() -> tuple[Messages, Messages, str]:
        return [], [], new_session_id()

    return {"send": send, "refresh": refresh_choices, "clear": clear}


def _panel(side: str, pick: str, weight: float) -> tuple[Any, Any, Any]:
    with gr.Group():
        with gr.Row(equal_height=True):
            choice = gr.Dropdown(DEFAULT_CHOICES, value=pick, label="Model", elem_id=f"experts-pick-{side}",
                                 scale=1, allow_custom_value=True)
            weight_slider = gr.Slider(0.0, 1.0, value=weight, step=0.05, label="Blend: share of sensibility",
                                      elem_id=f"experts-weight-{side}", scale=2)
        bot = gr.Chatbot(label=label_for(pick, weight), height=400, elem_id=f"experts-bot-{side}",
                         feedback_options=None)
    for control in (choice, weight_slider):
        control.change(lambda c, w: gr.update(label=label_for(c, w)), [choice, weight_slider], [bot],
                       api_visibility="private")
    return choice, weight_slider, bot


def build_experts_tab(client: GatewayClient) -> tuple[tuple[gr.Dropdown, gr.Dropdown], Callable[[], Any]]:
    """Render the tab; return its dropdowns and the function that refreshes their choices on load."""
    handlers = make_handlers(client)
    session = gr.State("")
    gr.Markdown("Talk to one expert, the base model or a blend you set by hand; tick *compare* to see two "
                "side by side on the same conversation.", elem_classes=["tab-intro"])
    compare = gr.Checkbox(value=True, label="Compare two side by side", elem_id="experts-compare")
    with gr.Row(equal_height=True):
        with gr.Column():
            pick_a, weight_a, bot_a = _panel("a", "empathy-sensibility", 1.0)
        with gr.Column(visible=True) as column_b:
            pick_b, weight_b, bot_b = _panel("b", "empathy-rationality", 0.0)
    box = gr.Textbox(placeholder="Write a message…", show_label=False, elem_id="experts-input",
                     submit_btn=True)
    clear = gr.Button("Clear", variant="secondary", size="sm")
    compare.change(lambda c: gr.update(visible=c), [compare], [column_b], api_visibility="private")
    box.submit(handlers["send"], [box, bot_a, bot_b, pick_a, weight_a, pick_b, weight_b, compare, session],
               [bot_a, bot_b, box, session], api_visibility="private")
    clear.click(handlers["clear"], None, [bot_a, bot_b, session], api_visibility="private")
    return (pick_a, pick_b), handlers["refresh"]
