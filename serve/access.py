"""Who may read the gateway's self-description (/docs, /openapi.json) and /metrics: one setting each."""

from __future__ import annotations

import ipaddress

from fastapi import Request

from serve.auth import bearer, valid_key
from serve.errors import APIError

SETTING = {"docs_access": "EMPATHY_DOCS_ACCESS", "metrics_access": "EMPATHY_METRICS_ACCESS"}


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(request: Request, field: str) -> None:
    """Raise unless the access mode `settings.<field>` lets this client in (see ServeSettings)."""
    settings = request.app.state.gateway.settings
    mode = getattr(settings, field)
    if mode == "open":
        return
    if mode == "off":
        raise APIError(404, f"{request.url.path} is turned off ({SETTING[field]}=off).", code="not_found")
    if mode == "loopback" and is_loopback(request.client.host if request.client else None):
        return
    keys_configured = bool(settings.api_keys or settings.admin_key)
    if mode == "key" and not keys_configured:
        return
    token = bearer(request)
    if valid_key(request, token):
        return
    hint = "send `Authorization: Bearer <key>`" if keys_configured else "configure EMPATHY_API_KEYS"
    raise APIError(401 if keys_configured else 403,
                   f"{request.url.path} is open to this machine only ({SETTING[field]}={mode}): {hint}, "
                   f"or set {SETTING[field]}=open.", code="invalid_api_key" if keys_configured else
                   "access_denied")
