"""`POST /v1/feedback`: a rating of one completion or a pairwise vote between two."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from serve.auth import require_api_key
from serve.errors import APIError
from serve.schemas import ERRORS, Feedback, FeedbackRecorded, Rating
from serve.state import Gateway
from serve.validation import read_json

router = APIRouter(dependencies=[Depends(require_api_key)], responses=ERRORS)


@router.post("/v1/feedback", responses={200: {"model": FeedbackRecorded}})
async def post_feedback(request: Request) -> dict[str, object]:
    gw: Gateway = request.app.state.gateway
    item = Feedback.validate_python(await read_json(request))
    ids = [item.completion_id] if isinstance(item, Rating) else [item.completion_a, item.completion_b]
    missing = await asyncio.to_thread(gw.store.missing_completions, ids)
    if missing:
        raise APIError(404, f"unknown completion id(s) {missing}: use the `id` of a completion returned by "
                       "this gateway.", param="completion_id", code="completion_not_found")
    if isinstance(item, Rating):
        row_id = await asyncio.to_thread(gw.store.add_rating, item.completion_id, item.value, item.scale)
    else:
        row_id = await asyncio.to_thread(gw.store.add_pairwise, item.completion_a, item.completion_b,
                                         item.outcome)
    return {"object": "feedback", "id": row_id, "type": item.type, "status": "recorded"}
