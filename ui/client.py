"""The UI's only way to the gateway: the `openai` client for chat, plain httpx for the non-OpenAI endpoints.

Every call uses the same API key as any other client of the gateway (no back door). Failures become a
`GatewayError` whose message a person can act on; the tabs show it in the chat instead of a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

log = logging.getLogger("empathy.ui")

RESTARTING = "The model is restarting, try again in a minute."
UNREACHABLE = "The gateway at {url} cannot be reached; is `empathy serve` running? Try again in a minute."
ROUTE_HEADER = "x-empathy-route"


class GatewayError(Exception):
    """A call to the gateway failed; the message is meant for the person in front of the UI, `status` is the
    gateway's HTTP status when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Route:
    """Which adapter answered: the `empathy` body field, or the `x-empathy-route` header as a fallback."""

    blend: float | None = None
    adapter: str | None = None
    source: str | None = None
    experiment: str | None = None
    arm: str | None = None
    probs: list[float] | None = None

    @classmethod
    def from_body(cls, data: Any) -> Route | None:
        if not isinstance(data, dict):
            return None
        blend = data.get("blend")
        probs = data.get("probs")
        return cls(
            blend=float(blend) if isinstance(blend, int | float) else None,
            adapter=data.get("adapter"), source=data.get("source"),
            experiment=data.get("experiment"), arm=data.get("arm"),
            probs=[float(p) for p in probs] if isinstance(probs, list) else None,
        )

    @classmethod
    def from_header(cls, value: str | None) -> Route | None:
        """Parse `blend=0.75; adapter=blend-0.75-ab12cd34; source=router`."""
        if not value:
            return None
        parts = dict(p.strip().split("=", 1) for p in value.split(";") if "=" in p)
        try:
            blend = float(parts["blend"]) if parts.get("blend") not in (None, "", "none") else None
        except ValueError:
            blend = None
        return cls(blend=blend, adapter=parts.get("adapter"), source=parts.get("source"),
                   experiment=parts.get("experiment"), arm=parts.get("arm"))


@dataclass
class Reply:
    """A reply as it streams in: the text so far, the completion id and the route once known."""

    text: str = ""
    completion_id: str | None = None
    route: Route | None = None
    error: str | None = None
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def v1_url(api_base_url: str) -> str:
    """Accept `http://host:port` or `http://host:port/v1`; return the latter."""
    base = api_base_url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def describe_error(exc: Exception, url: str) -> str:
    """One sentence for the chat: never a stack trace."""
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code in (502, 503, 504):
            return RESTARTING
        return f"The gateway answered {exc.status_code}: {_api_message(exc)}"
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return UNREACHABLE.format(url=url)
    if isinstance(exc, openai.APIError):
        # An error event inside a stream: the engine went away mid-answer.
        return RESTARTING
    if isinstance(exc, httpx.HTTPStatusError):
        if exc.response.status_code in (502, 503, 504):
            return RESTARTING
        return f"The gateway answered {exc.response.status_code}: {_response_message(exc.response)}"
    return f"Unexpected error talking to the gateway: {type(exc).__name__}: {exc}"


def _response_message(response: httpx.Response) -> str:
    """The `error.message` of the gateway's OpenAI-shaped error body, else the start of the body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return f"{response.text[:200]} ({response.request.url})"


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message


class GatewayClient:
    """Chat, models, feedback and experiments of one gateway, with one API key."""

    def __init__(self, api_base_url: str, api_key: str | None, timeout: float = 120.0,
                 max_tokens: int = 256) -> None:
        self.url = v1_url(api_base_url)
        self.max_tokens = max_tokens
        self.api_key = api_key or "none"
        self.timeout = timeout
        self.openai = openai.OpenAI(base_url=self.url, api_key=self.api_key, timeout=timeout, max_retries=0)

    # -- chat ---------------------------------------------------------------------------------------------
    def stream_chat(self, model: str, messages: list[dict[str, str]], *, session_id: str | None = None,
                    extra_body: dict[str, Any] | None = None) -> Iterator[Reply]:
        """Yield the same `Reply` after every chunk; on failure it carries `error` and `done`."""
        reply = Reply()
        headers = {"x-session-id": session_id} if session_id else None
        try:
            raw = self.openai.chat.completions.with_raw_response.create(
                model=model, messages=messages, stream=True, max_tokens=self.max_tokens,  # type: ignore[arg-type]
                extra_headers=headers, extra_body=extra_body,
            )
            reply.route = Route.from_header(raw.headers.get(ROUTE_HEADER))
            for chunk in raw.parse():
                _absorb_chunk(reply, chunk)
                yield reply
        except GatewayError as exc:
            log.warning("chat with %s failed: %s", model, exc)
            reply.error = str(exc)
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            log.warning("chat with %s failed: %s", model, exc)
            reply.error = describe_error(exc, self.url)
        reply.done = True
        yield reply

    def models(self) -> list[str]:
        try:
            return [m.id for m in self.openai.models.list().data]
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise GatewayError(describe_error(exc, self.url)) from exc

    # -- the gateway's own endpoints ---------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        try:
            response = httpx.request(method, f"{self.url}{path}", json=payload, timeout=30.0,
                                     headers={"Authorization": f"Bearer {self.api_key}"})
            response.raise_for_status()
            return response.json() if response.content else {}
        except httpx.HTTPError as exc:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            raise GatewayError(describe_error(exc, self.url), status) from exc

    def send_feedback(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/feedback", payload) or {})

    def experiments(self) -> list[dict[str, Any]]:
        data = self._request("GET", "/experiments")
        return list(data.get("data", [])) if isinstance(data, dict) else []

    def metrics_text(self) -> str:
        """The gateway's Prometheus exposition (at `/metrics` next to `/v1`); empty when it has none."""
        try:
            response = httpx.get(f"{self.url.removesuffix('/v1')}/metrics", timeout=10.0,
                                 headers={"Authorization": f"Bearer {self.api_key}"})
            if response.status_code != 200:
                log.warning("gateway /metrics answered %s; the dashboard shows no router histogram",
                            response.status_code)
            return response.text if response.status_code == 200 else ""
        except httpx.HTTPError as exc:
            log.warning("gateway /metrics unreachable (%s); the dashboard shows no router histogram", exc)
            return ""

    def results(self, name: str) -> dict[str, Any]:
        data = self._request("GET", f"/experiments/{name}/results")
        return data if isinstance(data, dict) else {}


def _absorb_chunk(reply: Reply, chunk: Any) -> None:
    reply.completion_id = reply.completion_id or getattr(chunk, "id", None)
    extra = chunk.model_extra or {}
    if "empathy" in extra:
        reply.route = Route.from_body(extra["empathy"]) or reply.route
    if extra.get("error"):
        raise GatewayError(RESTARTING)
    for choice in chunk.choices or []:
        if choice.delta and choice.delta.content:
            reply.text += choice.delta.content
