"""`POST /v1/feedback`: a rating of one completion or a pairwise vote between two.

A pairwise vote has a voter: its `user` field (the arena sends a random id kept in the browser), else the
client's address. One vote per voter and pair of completions; at most EMPATHY_VOTES_PER_VOTER_PER_DAY votes
per voter and UTC day.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Request

from serve.auth import require_api_key
from serve.errors import APIError
from serve.schemas import FEEDBACK_ERRORS, Feedback, FeedbackRecorded, Pairwise, Rating
from serve.state import Gateway
from serve.store import VoteRefused
from serve.validation import read_json

api = APIRouter(dependencies=[Depends(require_api_key)], responses=FEEDBACK_ERRORS)
DAY = 86400.0


def utc_day(now: float) -> tuple[float, float]:
    """The start of the UTC day holding Unix time `now`, and the seconds left until the next one."""
    start = now - now % DAY
    return start, start + DAY - now


def voter_of(item: Pairwise, request: Request) -> str:
    if item.user:
        return f"user:{item.user}"
    return f"addr:{request.client.host if request.client else 'unknown'}"


def refused(exc: VoteRefused, now: float) -> APIError:
    """The vote's refusal as the client sees it: what happened and what to do."""
    if exc.reason == "duplicate":
        return APIError(409, "this voter already voted on this pair of answers; each pair is voted on once. "
                        "Start a new battle to vote again.", param="user", code="duplicate_vote")
    left = utc_day(now)[1]
    hours, minutes = int(left // 3600), int(left % 3600 // 60)
    return APIError(429, f"this voter has cast {exc.count} votes today, the most one voter may cast per UTC "
                    f"day (EMPATHY_VOTES_PER_VOTER_PER_DAY); voting opens again at 00:00 UTC, in {hours} h "
                    f"{minutes} min.", param="user", code="vote_limit_reached",
                    headers={"retry-after": str(int(left) + 1)})


async def _vote(gw: Gateway, item: Pairwise, request: Request) -> int:
    now = time.time()
    try:
        return await asyncio.to_thread(gw.store.add_pairwise, item.completion_a, item.completion_b,
                                       item.outcome, voter_of(item, request),
                                       gw.settings.votes_per_voter_per_day, utc_day(now)[0])
    except VoteRefused as exc:
        raise refused(exc, now) from None


@api.post("/v1/feedback", responses={200: {"model": FeedbackRecorded}})
async def post_feedback(request: Request) -> dict[str, object]:
    gw: Gateway = request.app.state.gateway
    item = Feedback.validate_python(await read_json(request))
    ids = [item.completion_id] if isinstance(item, Rating) else [item.completion_a, item.completion_b]
    await gw.completions_written()  # the rows of this gateway's replies that ended before this request
    missing = await asyncio.to_thread(gw.store.missing_completions, ids)
    if missing:  # perhaps a reply another gateway on the same database has just ended: look once more
        await asyncio.sleep(gw.settings.completion_write_delay + 0.1)
        missing = await asyncio.to_thread(gw.store.missing_completions, missing)
    if missing:
        raise APIError(404, f"unknown completion id(s) {missing}: use the `id` of a completion returned by "
                       "this gateway.", param="completion_id", code="completion_not_found")
    if isinstance(item, Rating):
        row_id = await asyncio.to_thread(gw.store.add_rating, item.completion_id, item.value, item.scale)
    else:
        row_id = await _vote(gw, item, request)
    return {"object": "feedback", "id": row_id, "type": item.type, "status": "recorded"}
