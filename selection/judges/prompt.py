"""The judge prompt: our own wording of the paper's two criteria. `PROMPT_VERSION` is part of the cache key,
so any change to the text below must bump it (old scores stay in the store under the old version)."""

from __future__ import annotations

from typing import Any

from selection.sample import Sample

PROMPT_VERSION = "sr-v1"
CRITERIA = ("sensibility", "rationality")
SCORES = tuple(range(1, 11))

SYSTEM = """You rate replies in empathetic conversations. A person (the Speaker) tells a Listener about \
something that happened to them; you judge ONE reply of the Listener, given the conversation before it.

Rate two criteria, each on an integer scale from 1 (not at all) to 10 (excellent):
- sensibility: emotional resonance. Does the reply recognise and name the Speaker's feeling, validate it, \
and show warmth, care or comfort?
- rationality: cognitive, reasoned content. Does the reply show understanding of the situation itself, offer \
a perspective, ask a useful question or make a concrete suggestion?
The two criteria are independent: a reply can be high on both, low on both, or high on one only.

Answer with JSON only: {"sensibility": <1-10>, "rationality": <1-10>}"""


def render_conversation(sample: Sample) -> str:
    lines = [f"{'Listener' if m.role == 'assistant' else 'Speaker'}: {m.content}" for m in sample.context]
    return "\n".join(lines) if lines else "(the reply opens the conversation)"


def build_messages(sample: Sample) -> list[dict[str, str]]:
    user = (f"Conversation so far:\n{render_conversation(sample)}\n\n"
            f"Listener's reply to rate:\n{sample.response}\n\nScores as JSON:")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def response_schema() -> dict[str, Any]:
    """JSON schema for `response_format`: each criterion an integer 1-10 (an enum, so even a weak model's
    constrained decoding can only produce a valid score)."""
    score = {"type": "integer", "enum": list(SCORES)}
    return {
        "name": "empathy_scores",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {name: score for name in CRITERIA},
            "required": list(CRITERIA),
            "additionalProperties": False,
        },
    }
