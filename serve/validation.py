"""Reading and checking request bodies before anything reaches vLLM (pure checks, one async reader)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from serve.errors import APIError, bad_request


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object of the body; 413 above `limit` bytes, 400 when it is not a JSON object."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        await _drain(request)
        raise _too_large(int(declared), limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            await _drain(request)
            raise _too_large(len(data), limit)
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object.", code="invalid_json")
    return body


async def _drain(request: Request) -> None:
    # Reading the rest lets the client finish sending and then read our 413 (instead of a reset).
    async for _ in request.stream():
        pass


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"request body of {size} bytes exceeds the limit of {limit} bytes "
                    "(EMPATHY_MAX_BODY_BYTES).", code="request_too_large")


def _check_int(body: dict[str, Any], name: str, minimum: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer; got {value!r}.", name)
    if value < minimum:
        raise bad_request(f"{name} must be >= {minimum}; got {value}.", name)


def check_common(body: dict[str, Any]) -> str:
    """Checks shared by chat and text completions; returns the model name."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("`model` is required: a name from GET /v1/models.", "model", code="missing_model")
    _check_int(body, "n", 1)
    _check_int(body, "max_tokens", 0)
    _check_int(body, "max_completion_tokens", 0)
    _check_int(body, "top_logprobs", 0)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("`stream` must be true or false.", "stream")
    return model


def check_chat(body: dict[str, Any]) -> str:
    model = check_common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list of {role, content}.", "messages")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise bad_request("every message must be an object with a `role`.", "messages")
    return model


def check_completion(body: dict[str, Any]) -> str:
    model = check_common(body)
    if "prompt" not in body:
        raise bad_request("`prompt` is required.", "prompt")
    return model
