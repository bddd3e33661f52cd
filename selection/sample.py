"""The unit of the pipeline: one listener turn with the conversation before it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant", "system"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Sample:
    """One reply to score and maybe train on.

    `context` holds the turns before the reply as chat messages (speaker = user, listener = assistant);
    `response` is the listener's reply. `id` is a hash of the content, so scores join to a sample forever,
    whatever file or line it came from.
    """

    id: str
    split: str
    conv_id: str
    turn: int
    context: tuple[Message, ...]
    response: str
    emotion: str = ""
    situation: str = ""
    source: str = field(default="", compare=False)  # "file:line" of the reply, for error messages

    def messages(self) -> list[dict[str, str]]:
        """The chat in the form TRL's SFT trainer and the OpenAI API take, reply last."""
        turns = [{"role": m.role, "content": m.content} for m in self.context]
        return [*turns, {"role": "assistant", "content": self.response}]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["context"] = [asdict(m) for m in self.context]
        return data


def sample_id(context: tuple[Message, ...], response: str, emotion: str = "", situation: str = "") -> str:
    """Stable content hash (16 hex chars) of a sample: same text -> same id, across runs and machines."""
    payload = json.dumps(
        {
            "context": [[m.role, m.content] for m in context],
            "response": response,
            "emotion": emotion,
            "situation": situation,
        },
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def make_sample(
    *,
    split: str,
    conv_id: str,
    turn: int,
    context: list[Message] | tuple[Message, ...],
    response: str,
    emotion: str = "",
    situation: str = "",
    source: str = "",
) -> Sample:
    ctx = tuple(context)
    return Sample(
        id=sample_id(ctx, response, emotion, situation),
        split=split,
        conv_id=conv_id,
        turn=turn,
        context=ctx,
        response=response,
        emotion=emotion,
        situation=situation,
        source=source,
    )
