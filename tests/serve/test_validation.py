"""`parse_json` without a server: the byte checks that let most bodies skip the walk over every value must
never let through what the walk refuses (unpaired surrogates however they are written, deep nesting)."""

from __future__ import annotations

import pytest

from serve.errors import APIError
from serve.validation import parse_json

DEPTH = 8


def _code(data: bytes) -> str | None:
    with pytest.raises(APIError) as caught:
        parse_json(data, DEPTH)
    assert caught.value.status == 400
    return caught.value.code


def test_a_plain_body_is_parsed() -> None:
    body = '{"model": "base", "messages": [{"role": "user", "content": "héllo 😀 [{"}]}'
    assert parse_json(body.encode(), DEPTH)["messages"][0]["content"] == "héllo 😀 [{"


@pytest.mark.parametrize("data", [
    b'{"user": "\\ud800"}',  # an escape
    b'{"user": "a\xed\xa0\x80b"}',  # the surrogate's own UTF-8 bytes
    '{"user": "\\udfff"}'.encode("utf-16"),  # another encoding
    '{"\\ud800": 1}'.encode("utf-32"),
])
def test_unpaired_surrogates_are_refused_however_they_are_written(data: bytes) -> None:
    assert _code(data) == "invalid_unicode"


def test_nesting_is_refused_beyond_the_limit_and_accepted_up_to_it() -> None:
    assert parse_json(b'{"a": ' + b"[" * (DEPTH - 1) + b"]" * (DEPTH - 1) + b"}", DEPTH)
    assert _code(b'{"a": ' + b"[" * DEPTH + b"]" * DEPTH + b"}") == "too_deep"


def test_brackets_in_strings_only_make_the_check_look_closer() -> None:
    assert parse_json(b'{"a": "' + b"[{" * DEPTH + b'"}', DEPTH) == {"a": "[{" * DEPTH}
