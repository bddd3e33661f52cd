"""The OpenAI surface: models, chat completions, text completions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from serve.auth import check_api_key, require_api_key
from serve.event_stream import ClientWatch
from serve.proxy import Call, forward
from serve.resolve import resolve
from serve.routing import session_key
from serve.sampling import with_defaults
from serve.schemas import (
    ERRORS,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelList,
    completion_responses,
)
from serve.state import Gateway
from serve.validation import check_chat, check_completion, read_json

api = APIRouter(dependencies=[Depends(require_api_key)], responses=ERRORS)
# The completion routes check the key themselves: FastAPI's dependency solving costs 0.1-0.2 ms of CPU per
# request, on the path of every reply (bench/proxy_cpu.py). `serve.middleware` calls them directly (the app
# keeps them for its OpenAPI schema and its 405s), so they take only the request.
completions_api = APIRouter(responses=ERRORS)


@api.get("/v1/models", responses={200: {"model": ModelList}})
async def list_models(request: Request) -> dict[str, object]:
    """Served models, each with the sampling defaults the gateway adds to requests that leave them out."""
    gw: Gateway = request.app.state.gateway
    created = int(time.time())
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "empathy-router",
         "sampling": gw.sampling(name).model_dump()}
        for name in gw.models()
    ]}


async def _complete(request: Request, path: str, schema: type[BaseModel]) -> Response:
    started = time.perf_counter()
    gw: Gateway = request.app.state.gateway
    check_api_key(gw.settings, request)
    body: dict[str, Any] = await read_json(request)
    check = check_chat if schema is ChatCompletionRequest else check_completion
    model = check(body, gw.settings)
    request.state.model = model
    # Types and ranges of the known fields (the model is not kept: the raw body is what is sent).
    schema.__pydantic_validator__.validate_python(body)
    pending: list[asyncio.Task[Any]] = []  # store writes the request need not wait for before vLLM
    try:
        route = await resolve(gw, model, body, request.headers, pending)
    except Exception:
        await asyncio.gather(*pending)  # answered after the writes, as when they ran inline
        raise
    request.state.route = route
    body = with_defaults(body, gw.sampling(model))
    body["model"] = route.adapter
    call = Call(path=path, model=model, body=body, route=route, subject=session_key(request.headers, body),
                request_id=request.state.request_id, started=started, pending=pending)
    with ClientWatch(request.receive) as watch:  # the body is read: a disconnect now is the client leaving
        return await watch.until(forward(gw, call, watch))


@completions_api.post("/v1/chat/completions", responses=completion_responses(ChatCompletion))
async def chat_completions(request: Request) -> Response:
    return await _complete(request, "/v1/chat/completions", ChatCompletionRequest)


@completions_api.post("/v1/completions", responses=completion_responses(Completion))
async def completions(request: Request) -> Response:
    return await _complete(request, "/v1/completions", CompletionRequest)
