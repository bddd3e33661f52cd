"""Bearer keys: API keys for /v1 (when configured) and the admin key for admin endpoints."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request

from serve.errors import APIError


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(token: str | None, keys: list[str]) -> bool:
    return token is not None and any(hmac.compare_digest(token, key) for key in keys)


def valid_key(request: Request, token: str | None) -> bool:
    """`token` is one of EMPATHY_API_KEYS (or the admin key, which is also an API key)."""
    settings = request.app.state.gateway.settings
    return _matches(token, [*settings.api_keys, *([settings.admin_key] if settings.admin_key else [])])


def is_admin(request: Request, token: str | None) -> bool:
    admin_key = request.app.state.gateway.settings.admin_key
    return bool(admin_key) and _matches(token, [admin_key])


def check_api_key(settings: Any, request: Request) -> None:
    """401 unless the request carries one of EMPATHY_API_KEYS (`settings`: the gateway's), when set."""
    if settings.api_keys and not valid_key(request, bearer(request)):
        raise APIError(401, "invalid or missing API key: send `Authorization: Bearer <key>` with a key "
                       "from EMPATHY_API_KEYS.", code="invalid_api_key")


async def require_api_key(request: Request) -> None:
    check_api_key(request.app.state.gateway.settings, request)


async def require_admin(request: Request) -> None:
    admin_key = request.app.state.gateway.settings.admin_key
    if not admin_key:
        raise APIError(403, "admin endpoints are disabled: set EMPATHY_ADMIN_KEY to enable them.",
                       code="admin_disabled")
    token = bearer(request)
    if token is None:
        raise APIError(401, "this endpoint needs the admin key: `Authorization: Bearer <EMPATHY_ADMIN_KEY>`.",
                       code="invalid_api_key")
    if not _matches(token, [admin_key]):
        raise APIError(403, "this endpoint needs the admin key; the key sent is not it.", code="not_admin")
