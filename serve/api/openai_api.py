"""The OpenAI surface: models, chat completions, text completions."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from serve.auth import require_api_key
from serve.proxy import Call, forward
from serve.resolve import resolve
from serve.routing import session_key
from serve.state import Gateway
from serve.validation import check_chat, check_completion, read_json

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    gw: Gateway = request.app.state.gateway
    created = int(time.time())
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "empathy-router"}
        for name in gw.models()
    ]}


async def _complete(request: Request, path: str, chat: bool) -> Response:
    gw: Gateway = request.app.state.gateway
    started = time.perf_counter()
    body = await read_json(request, gw.settings.max_body_bytes)
    model = check_chat(body) if chat else check_completion(body)
    request.state.model = model
    route = await resolve(gw, model, body, request.headers)
    request.state.route = route
    body["model"] = route.adapter
    call = Call(path=path, model=model, body=body, route=route, subject=session_key(request.headers, body),
                request_id=request.state.request_id, started=started)
    return await forward(gw, call)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _complete(request, "/v1/chat/completions", chat=True)


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _complete(request, "/v1/completions", chat=False)
