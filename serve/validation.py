"""Reading and checking request bodies before anything reaches vLLM (pure checks, one async reader).

The edge refuses what JSON and Unicode allow but the API cannot serve: non-finite numbers (`NaN`,
`Infinity`, `1e999`), strings with unpaired surrogates (`"\\ud800"`: not encodable as UTF-8, so not
storable, loggable or tokenizable), nesting deeper than EMPATHY_MAX_JSON_DEPTH, bodies larger than
EMPATHY_MAX_BODY_BYTES (413) and bodies that stall (408). Everything behind it sees clean JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from serve.errors import APIError, bad_request

CLOSE = {"connection": "close"}
DRAIN_SECONDS = 5.0  # at most this long is the rest of a too-large body read (and dropped)


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


# Made once: `json.loads` with options builds a decoder (and its scanner) on every call.
_STRICT = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def loads_strict(data: bytes | bytearray | str) -> Any:
    """`json.loads` that refuses NaN, Infinity and numbers that overflow to them (ValueError)."""
    if not isinstance(data, str):
        data = data.decode(json.detect_encoding(data), "surrogatepass")  # as `json.loads` reads bytes
    return _STRICT.decode(data)


def _walk(value: Any, max_depth: int) -> None:
    """Raise 400 for nesting deeper than `max_depth` or a string (or key) that is not valid Unicode
    (iterative: no recursion however deep the input)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise bad_request(f"the body nests deeper than {max_depth} levels (EMPATHY_MAX_JSON_DEPTH).",
                                  path or None, code="too_deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                sub = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    _check_text(key, sub)
                stack.append((child, depth + 1, sub))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("a string holds an unpaired UTF-16 surrogate (e.g. \\ud800), which is not valid "
                          "Unicode; send valid UTF-8 text.", path or None, code="invalid_unicode") from None


def parse_json(data: bytes, max_depth: int) -> dict[str, Any]:
    """The JSON object in `data`, or 400 for anything the API cannot serve (see the module doc)."""
    try:
        body = loads_strict(data)
    except _NonFinite as exc:
        raise bad_request(f"numbers must be finite; the body holds {exc}.", code="invalid_number") from None
    except RecursionError:
        raise bad_request(f"the body nests deeper than {max_depth} levels (EMPATHY_MAX_JSON_DEPTH).",
                          code="too_deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object.", code="invalid_json")
    if _may_be_unservable(data, max_depth):
        _walk(body, max_depth)
    return body


def _may_be_unservable(data: bytes, max_depth: int) -> bool:
    """Whether the JSON in `data` may nest deeper than `max_depth` or hold an unpaired surrogate (then
    `_walk` looks at every value; byte counts and searches cost far less). Nesting needs as many `[` and `{`
    bytes; a surrogate needs a `\\u` escape or its own bytes, read with "surrogatepass" (in UTF-8 they start
    with 0xED; UTF-16 and UTF-32 bodies hold zero bytes and are always walked)."""
    return (data.count(b"[") + data.count(b"{") > max_depth or b"\\u" in data or b"\xed" in data
            or b"\x00" in data)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The raw body: 413 above `limit` bytes, 408 when it does not arrive within `timeout` seconds (both
    close the connection: the rest of the body is not read)."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise APIError(400, "Content-Length must be a number of bytes.", code="invalid_request",
                       headers=CLOSE)
    if declared and int(declared) > limit:
        await _drain(request, timeout)
        raise _too_large(int(declared), limit)
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while len(data) <= limit:  # (what `request.stream()` does, without an async generator)
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                data += message.get("body", b"")
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise APIError(408, f"the request body did not arrive within {timeout:g} s (got {len(data)} bytes"
                       f"{f' of {declared}' if declared else ''}; EMPATHY_BODY_TIMEOUT).",
                       code="request_timeout", headers=CLOSE) from None
    if len(data) > limit:
        await _drain(request, timeout)
        raise _too_large(len(data), limit)
    return bytes(data)


async def _drain(request: Request, timeout: float) -> None:
    # Reading the rest (for a bounded time) lets the client finish sending and then read our 413 instead
    # of a connection reset; a client that stalls gets the 413 when the time is up.
    try:
        async with asyncio.timeout(min(timeout, DRAIN_SECONDS)):
            async for _ in request.stream():
                pass
    except TimeoutError:
        pass


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object, read and checked under the gateway's settings."""
    settings = request.app.state.gateway.settings
    data = await read_body(request, settings.max_body_bytes, settings.body_timeout)
    return parse_json(data, settings.max_json_depth)


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"request body of {size} bytes exceeds the limit of {limit} bytes "
                    "(EMPATHY_MAX_BODY_BYTES).", code="request_too_large", headers=CLOSE)


def _check_int(body: dict[str, Any], name: str, minimum: int, maximum: int | None = None,
               setting: str = "") -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer; got {value!r}.", name)
    if value < minimum:
        raise bad_request(f"{name} must be >= {minimum}; got {value}.", name)
    if maximum is not None and value > maximum:
        raise bad_request(f"{name} must be <= {maximum} on this gateway ({setting}); got {value}.", name,
                          code="over_limit")


def _prompt_count(body: dict[str, Any]) -> int:
    """How many prompts a text completion batches (a list of strings or of token lists)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        return len(prompt)
    return 1


def check_common(body: dict[str, Any], limits: Any) -> str:
    """Checks shared by chat and text completions (`limits`: the gateway's settings); returns the model."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("`model` is required: a name from GET /v1/models.", "model", code="missing_model")
    for name in ("n", "best_of"):
        _check_int(body, name, 1, limits.max_n, "EMPATHY_MAX_N")
    if _prompt_count(body) > limits.max_prompts:
        raise bad_request(f"a batch of {_prompt_count(body)} prompts exceeds EMPATHY_MAX_PROMPTS="
                          f"{limits.max_prompts}.", "prompt", code="over_limit")
    for name in ("max_tokens", "max_completion_tokens"):
        _check_int(body, name, 0, limits.max_tokens_cap, "EMPATHY_MAX_TOKENS_CAP")
    _check_int(body, "top_logprobs", 0)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("`stream` must be true or false.", "stream")
    return model


def check_chat(body: dict[str, Any], limits: Any) -> str:
    model = check_common(body, limits)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list of {role, content}.", "messages")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise bad_request("every message must be an object with a `role`.", "messages")
    return model


def check_completion(body: dict[str, Any], limits: Any) -> str:
    model = check_common(body, limits)
    if "prompt" not in body:
        raise bad_request("`prompt` is required.", "prompt")
    return model
