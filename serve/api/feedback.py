"""`POST /v1/feedback`: a rating of one completion or a pairwise vote between two."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, TypeAdapter, model_validator

from serve.auth import require_api_key
from serve.errors import APIError
from serve.state import Gateway
from serve.validation import read_json

router = APIRouter(dependencies=[Depends(require_api_key)])


class Rating(BaseModel):
    type: Literal["rating"]
    completion_id: str = Field(min_length=1)
    value: float
    scale: Literal["thumbs", "likert"] = "thumbs"

    @model_validator(mode="after")
    def _in_scale(self) -> Rating:
        ok = self.value in (0, 1) if self.scale == "thumbs" else 1 <= self.value <= 5
        if not ok:
            raise ValueError(f"value {self.value} is not on the {self.scale} scale "
                             "(thumbs: 0 or 1; likert: 1 to 5)")
        return self


class Pairwise(BaseModel):
    type: Literal["pairwise"]
    completion_a: str = Field(min_length=1)
    completion_b: str = Field(min_length=1)
    outcome: Literal["a", "b", "tie", "both_bad"]

    @model_validator(mode="after")
    def _two_completions(self) -> Pairwise:
        if self.completion_a == self.completion_b:
            raise ValueError("completion_a and completion_b must differ")
        return self


Feedback = TypeAdapter(Annotated[Rating | Pairwise, Field(discriminator="type")])


@router.post("/v1/feedback")
async def post_feedback(request: Request) -> dict[str, object]:
    gw: Gateway = request.app.state.gateway
    item = Feedback.validate_python(await read_json(request, gw.settings.max_body_bytes))
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
