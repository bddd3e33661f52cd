"""The one place that turns exceptions into OpenAI-shaped HTTP errors.

Every error the gateway returns has the body `{"error": {"message", "type", "param", "code"}}`, the shape
the `openai` SDK parses into its exception classes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from empathy.errors import ConfigError, DataError, EmpathyError, ModelError

log = logging.getLogger("empathy.serve")

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error", 500: "server_error", 502: "server_error", 503: "server_error",
    504: "server_error",
}


class APIError(Exception):
    """An error with an HTTP status, shown to the client in the OpenAI shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_ or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def unavailable(message: str) -> APIError:
    return APIError(503, message, code="engine_unavailable", headers={"retry-after": "5"})


def from_exception(exc: Exception) -> APIError:
    """Map any exception to an APIError (the only mapping in the gateway)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, StarletteHTTPException):
        return APIError(exc.status_code, str(exc.detail), code=_http_code(exc.status_code))
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return APIError(400, f"invalid request: {first.get('msg', exc)}", param=param, code="invalid_value")
    if isinstance(exc, ValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        return APIError(400, f"invalid request: {param}: {first.get('msg', exc)}", param=param,
                        code="invalid_value")
    if isinstance(exc, ModelError):
        return APIError(404, str(exc), code="model_not_found")
    if isinstance(exc, (ConfigError, DataError)):
        return APIError(400, str(exc), code="invalid_value")
    if isinstance(exc, EmpathyError):
        return APIError(500, str(exc), code="internal_error")
    return APIError(500, f"internal error ({type(exc).__name__}); see the gateway log", code="internal_error")


def _http_code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 401: "invalid_api_key"}.get(status, "http_error")


def error_response(err: APIError, request_id: str | None = None) -> JSONResponse:
    headers = dict(err.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def _count(request: Request, err: APIError) -> None:
    gateway = getattr(request.app.state, "gateway", None)
    model = getattr(request.state, "model", None) or "-"
    if gateway is not None:
        gateway.metrics.errors.labels(model, str(err.status)).inc()


def install(app: FastAPI) -> None:
    """Register the handlers: every exception leaves the app as an OpenAI-shaped error."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        err = from_exception(exc)
        _count(request, err)
        if err.status >= 500 and not isinstance(exc, APIError):
            log.error("request failed: %s", err.message, exc_info=True)
        elif err.status >= 500:
            log.warning("request failed: %s", err.message)
        return error_response(err, getattr(request.state, "request_id", None))

    # Named classes go to Starlette's exception middleware (handled, not re-raised); only truly
    # unexpected exceptions reach the catch-all, which logs them with a traceback.
    for kind in (APIError, StarletteHTTPException, RequestValidationError, ValidationError, EmpathyError,
                 Exception):
        app.add_exception_handler(kind, handle)
