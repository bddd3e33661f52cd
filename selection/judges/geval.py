"""Pure parsing of a judge reply: the integer scores, and G-Eval expectations from token logprobs.

G-Eval: at the token where a score's digits are generated, the score is the probability-weighted mean over
the valid score tokens among `top_logprobs`, renormalised over those tokens. "10" may be one token or "1"
then "0": when the chosen token is "1", the probability of "0" at the next position splits the mass of "1"
between 1 and 10.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from selection.judges.prompt import CRITERIA, SCORES

LOW, HIGH = min(SCORES), max(SCORES)
DIGITS = re.compile(r"\s*(\d{1,2})\s*$")


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token with its alternatives (token text -> logprob)."""

    token: str
    top: dict[str, float]


def parse_scores(text: str) -> dict[str, int] | None:
    """The integer scores in `text` (JSON, or `name: n` lines as a fallback), or None if any is missing or
    outside 1-10."""
    scores: dict[str, int] = {}
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        data = None
    for name in CRITERIA:
        value = data.get(name) if isinstance(data, dict) else None
        if value is None:
            found = re.search(rf"{name}\W{{0,6}}(\d{{1,2}})\b", text or "", flags=re.IGNORECASE)
            value = found.group(1) if found else None
        try:
            number = int(value) if value is not None and float(value) == int(float(value)) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not LOW <= number <= HIGH:
            return None
        scores[name] = number
    return scores


def score_token_positions(tokens: Sequence[str]) -> dict[str, int]:
    """Criterion -> index of the token holding the first digit of its value in the generated text."""
    text = "".join(tokens)
    starts, offset = [], 0
    for token in tokens:
        starts.append(offset)
        offset += len(token)
    positions: dict[str, int] = {}
    for name in CRITERIA:
        found = re.search(rf'"{name}"\s*:\s*"?(\d)', text)
        if found:
            char = found.start(1)
            positions[name] = max(i for i, start in enumerate(starts) if start <= char)
    return positions


def _digit_value(token: str) -> int | None:
    found = DIGITS.fullmatch(token.strip('"'))
    return int(found.group(1)) if found else None


def expected_score(tokens: Sequence[TokenLogprobs], index: int) -> float | None:
    """Probability-weighted mean score at `tokens[index]`, or None when no alternative is a valid score."""
    here = tokens[index]
    ten_share = 0.0
    if _digit_value(here.token) == 1 and index + 1 < len(tokens):
        nxt = tokens[index + 1]
        ten_share = sum(math.exp(lp) for tok, lp in nxt.top.items() if tok.startswith("0"))
        ten_share = min(ten_share, 1.0)
    mass: dict[int, float] = {}
    for token, logprob in here.top.items():
        value = _digit_value(token)
        if value is None or not LOW <= value <= HIGH:
            continue
        prob = math.exp(logprob)
        if value == 1 and ten_share:
            mass[10] = mass.get(10, 0.0) + prob * ten_share
            prob *= 1.0 - ten_share
        mass[value] = mass.get(value, 0.0) + prob
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(value * prob for value, prob in mass.items()) / total


def geval_scores(tokens: Sequence[TokenLogprobs]) -> dict[str, float] | None:
    """G-Eval expectations for every criterion, or None when any cannot be located in the tokens."""
    positions = score_token_positions([t.token for t in tokens])
    result: dict[str, float] = {}
    for name in CRITERIA:
        if name not in positions:
            return None
        value = expected_score(tokens, positions[name])
        if value is None:
            return None
        result[name] = value
    return result
