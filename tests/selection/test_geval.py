"""Pure parts of the LLM judge: parsing, G-Eval expectations, the prompt's schema."""

from __future__ import annotations

import math

import pytest

from selection.judges.geval import TokenLogprobs, expected_score, geval_scores, parse_scores
from selection.judges.openai_judge import api_base, backoff_delay
from selection.judges.prompt import build_messages, response_schema
from selection.sample import Message, make_sample


def _tok(token: str, **alternatives: float) -> TokenLogprobs:
    return TokenLogprobs(token, {key.removeprefix("t"): math.log(p) for key, p in alternatives.items()})


def test_parse_scores_json_and_fallback_and_range() -> None:
    assert parse_scores('{"sensibility": 7, "rationality": 3}') == {"sensibility": 7, "rationality": 3}
    assert parse_scores("Sensibility: 9\nRationality: 10") == {"sensibility": 9, "rationality": 10}
    assert parse_scores('{"sensibility": 0, "rationality": 3}') is None
    assert parse_scores("a lovely reply") is None
    assert parse_scores("") is None


def test_expected_score_renormalises_over_score_tokens() -> None:
    tokens = [_tok('{"sensibility": '), _tok("7", t7=0.5, t8=0.25, tx=0.25)]
    assert expected_score(tokens, 1) == pytest.approx((7 * 0.5 + 8 * 0.25) / 0.75)


def test_ten_split_into_one_then_zero() -> None:
    # "1" chosen, then "0" with probability 0.6: 60% of the mass of "1" is a 10.
    tokens = [_tok("1", t1=0.5, t9=0.5), _tok("0", t0=0.6, **{"t,": 0.4})]
    assert expected_score(tokens, 0) == pytest.approx(0.5 * 9 + 0.3 * 10 + 0.2 * 1)


def test_geval_locates_each_criterion() -> None:
    tokens = [_tok('{"'), _tok("sens"), _tok('ibility": '), _tok("8", t8=1.0), _tok(', "rationality": '),
              _tok("2", t2=0.5, t4=0.5), _tok("}")]
    assert geval_scores(tokens) == {"sensibility": 8.0, "rationality": 3.0}
    assert geval_scores([_tok("nothing")]) is None


def test_prompt_and_schema() -> None:
    sample = make_sample(split="valid", conv_id="c", turn=2, context=[Message("user", "I lost my keys.")],
                         response="Oh no, where did you last see them?")
    messages = build_messages(sample)
    assert "Speaker: I lost my keys." in messages[1]["content"]
    assert "sensibility" in messages[0]["content"] and "rationality" in messages[0]["content"]
    schema = response_schema()["schema"]
    assert schema["properties"]["sensibility"]["enum"] == list(range(1, 11))


def test_api_base_and_backoff() -> None:
    assert api_base("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert api_base("https://api.openai.com/v1/") == "https://api.openai.com/v1"
    assert all(0 <= backoff_delay(attempt) <= 30 for attempt in range(10))


def test_vllm_regex_constraint_matches_what_the_parser_reads() -> None:
    import re

    from selection.judges.openai_judge import SCORE_REGEX

    text = '{"sensibility": 10, "rationality": 3}'
    assert re.fullmatch(SCORE_REGEX, text)
    assert not re.fullmatch(SCORE_REGEX, '{"sensibility": 0, "rationality": 3}')
    assert parse_scores(text) == {"sensibility": 10, "rationality": 3}
