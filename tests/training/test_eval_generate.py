"""What a generation request sends: greedy sets only temperature 0; defaults mode sends no sampling field."""

from __future__ import annotations

from training.evaluation.generate import request_fields


def test_request_fields() -> None:
    assert request_fields(64) == {"temperature": 0.0, "max_tokens": 64}
    assert request_fields(None) == {"temperature": 0.0}
    assert request_fields(None, greedy=False) == {}
    assert request_fields(32, greedy=False) == {"max_tokens": 32}
