"""Pure helpers between Gradio's message format and the OpenAI one, and the small captions the UI shows."""

from __future__ import annotations

import re
from typing import Any

from ui.client import Reply, Route

# The caption is appended to an assistant message; this pattern removes it before the history is sent back.
CAPTION_RE = re.compile(r"\n*<sub class=\"empathy-caption\">.*?</sub>\s*$", re.DOTALL)
ERROR_RE = re.compile(r"^⚠️ .*$", re.DOTALL)


def blend_label(route: Route | None) -> str:
    """`75% sensibility / 25% rationality`, or the adapter name when there is no blend weight."""
    if route is None:
        return ""
    if route.blend is not None:
        sens = round(route.blend * 100)
        return f"{sens}% sensibility / {100 - sens}% rationality"
    return route.adapter or ""


def caption(route: Route | None) -> str:
    label = blend_label(route)
    if not label:
        return ""
    source = f" · {route.source}" if route and route.source else ""
    return f'\n\n<sub class="empathy-caption">blend: {label}{source}</sub>'


def reply_markdown(reply: Reply, with_caption: bool = True) -> str:
    """What the chatbot shows for a reply: its text, the blend caption, or the error in a clear sentence."""
    if reply.error:
        partial = f"{reply.text}\n\n" if reply.text else ""
        return f"{partial}⚠️ {reply.error}"
    text = reply.text or ("…" if not reply.done else "(empty reply)")
    # The caption appears when the reply is complete: it doubles as the "finished" signal.
    return text + (caption(reply.route) if with_caption and reply.done else "")


def message_text(message: dict[str, Any]) -> str:
    """Text of a Gradio message whose content is a string or a list of content parts."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return ""


def to_openai(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Chatbot history -> OpenAI messages: captions stripped, failed replies (and their question) dropped."""
    messages: list[dict[str, str]] = []
    for message in history:
        role = message.get("role")
        if role not in ("user", "assistant"):
            continue
        text = CAPTION_RE.sub("", message_text(message)).strip()
        if role == "assistant" and (not text or ERROR_RE.match(text) or "\n\n⚠️ " in text):
            if messages and messages[-1]["role"] == "user":
                messages.pop()
            continue
        messages.append({"role": str(role), "content": text})
    return messages


def arm_request(model: str, experiment: str | None = None, arm: str | None = None
                ) -> tuple[str, dict[str, Any] | None]:
    """An arm -> (model, extra_body) for the request. An experiment's arm is asked for by name on the
    experiment's model, so the gateway stores the completion under that arm (for its results); a bare
    model (`empathy`, `blend:0.75`, ...) is requested directly."""
    if experiment and arm:
        return experiment, {"empathy": {"arm": arm}}
    if model.startswith("blend:"):
        return "empathy", {"empathy": {"blend": float(model.split(":", 1)[1])}}
    return model, None


def pretty_name(model: str) -> str:
    names = {"empathy": "routed (empathy)", "base": "base model",
             "empathy-sensibility": "sensibility expert", "empathy-rationality": "rationality expert",
             "empathy-full": "full-data expert"}
    if model.startswith("blend:"):
        weight = float(model.split(":", 1)[1])
        return f"blend {round(weight * 100)}% sensibility"
    return names.get(model, model)
