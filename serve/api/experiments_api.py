"""Experiments: list and results for API users; create and edit for the admin."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from serve.auth import require_admin, require_api_key
from serve.errors import APIError, bad_request
from serve.experiments import Experiment
from serve.results import experiment_results
from serve.state import Gateway
from serve.validation import read_json

router = APIRouter(dependencies=[Depends(require_api_key)])
admin = APIRouter(dependencies=[Depends(require_admin)])


class ExperimentPatch(BaseModel):
    active: bool | None = None
    description: str | None = None


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _get(gw: Gateway, name: str) -> Experiment:
    if name not in gw.experiments:
        raise APIError(404, f"experiment {name!r} does not exist; GET /v1/experiments lists them.",
                       param="name", code="experiment_not_found")
    return gw.experiments[name]


@router.get("/v1/experiments")
async def list_experiments(request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    return {"object": "list", "data": [e.model_dump() for e in gw.experiments.values()]}


@router.get("/v1/experiments/{name}")
async def get_experiment(name: str, request: Request) -> dict[str, Any]:
    return _get(_gateway(request), name).model_dump()


@router.get("/v1/experiments/{name}/results")
async def results(name: str, request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    exp = _get(gw, name)
    data = await asyncio.to_thread(gw.store.experiment_data, exp)
    return await asyncio.to_thread(experiment_results, exp, data)


@admin.post("/v1/experiments")
async def create_experiment(request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    exp = Experiment.model_validate(await read_json(request, gw.settings.max_body_bytes))
    await gw.put_experiment(exp)
    return exp.model_dump()


@admin.put("/v1/experiments/{name}")
async def replace_experiment(name: str, request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    exp = Experiment.model_validate(await read_json(request, gw.settings.max_body_bytes))
    if exp.name != name:
        raise bad_request(f"the body names experiment {exp.name!r} but the URL names {name!r}.", "name")
    await gw.put_experiment(exp)
    return exp.model_dump()


@admin.patch("/v1/experiments/{name}")
async def patch_experiment(name: str, request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    patch = ExperimentPatch.model_validate(await read_json(request, gw.settings.max_body_bytes))
    exp = _get(gw, name).model_copy(update=patch.model_dump(exclude_none=True))
    await gw.put_experiment(exp)
    return exp.model_dump()
