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
        self.message = _printable(message, 2000)
        self.param = _printable(param, 200) if param is not None else None
        self.code = code
        self.type = type_ or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _printable(text: str, limit: int) -> str:
    """Text that can always be sent (a client's lone surrogate escaped) and is never huge (a client's 1 MB
    model name is not echoed whole)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def unavailable(message: str) -> APIError:
    return APIError(503, message, code="engine_unavailable", headers={"retry-after": "5"})


def from_exception(exc: Exception) -> APIError:
    """Map any exception to an APIError (the only mapping in the gateway)."""
    if isinstance(exc, APIError):
        return exc
    if type(exc).__name__ in {"ClientGone", "ClientDisconnect"}:
        return APIError(499, "the client closed the connection before the reply; the work was cancelled.",
                        code="client_closed")
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


def count(scope_state: Any, app_state: Any, err: APIError) -> None:
    """One error in the metrics (model label from the closed set: a client never mints a series)."""
    gateway = getattr(app_state, "gateway", None)
    if gateway is not None:
        model = gateway.model_label(getattr(scope_state, "model", None)) or "-"
        gateway.metrics.errors.labels(model, str(err.status)).inc()


def log_error(err: APIError, exc: BaseException) -> None:
    if err.status == 499:
        log.info("request abandoned: %s", err.message)
    elif err.status >= 500 and not isinstance(exc, APIError):
        log.error("request failed: %s", err.message, exc_info=exc)
    elif err.status >= 500:
        log.warning("request failed: %s", err.message)


def install(app: FastAPI) -> None:
    """Register the handlers: every exception leaves the app as an OpenAI-shaped error."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        err = from_exception(exc)
        count(request.state, request.app.state, err)
        log_error(err, exc)
        return error_response(err, getattr(request.state, "request_id", None))

    # Named classes go to Starlette's exception middleware (handled, not re-raised). Anything else is
    # answered by `serve.middleware` (a 500 in this shape, on a connection that stays usable): a handler
    # for `Exception` here would go to Starlette's ServerErrorMiddleware, which re-raises after answering,
    # so the server drops the keep-alive connection without saying so.
    for kind in (APIError, StarletteHTTPException, RequestValidationError, ValidationError, EmpathyError):
        app.add_exception_handler(kind, handle)
