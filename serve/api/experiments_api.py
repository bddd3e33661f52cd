"""Experiments: list and results for API users; create, edit and delete for the admin."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request

from serve.auth import require_admin, require_api_key
from serve.errors import APIError, bad_request
from serve.experiments import Experiment
from serve.results import experiment_results
from serve.schemas import ERRORS, ExperimentDeleted, ExperimentList, ExperimentPatch, ExperimentResults
from serve.sequential import CSConfig
from serve.state import Gateway
from serve.validation import read_json

api = APIRouter(dependencies=[Depends(require_api_key)], responses=ERRORS)
admin_api = APIRouter(dependencies=[Depends(require_admin)], responses=ERRORS)


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _get(gw: Gateway, name: str) -> Experiment:
    if name not in gw.experiments:
        raise APIError(404, f"experiment {name!r} does not exist; GET /v1/experiments lists them.",
                       param="name", code="experiment_not_found")
    return gw.experiments[name]


@api.get("/v1/experiments", responses={200: {"model": ExperimentList}})
async def list_experiments(request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    return {"object": "list", "data": [e.model_dump() for e in gw.experiments.values()]}


@api.get("/v1/experiments/{name}", responses={200: {"model": Experiment}})
async def get_experiment(name: str, request: Request) -> dict[str, Any]:
    return _get(_gateway(request), name).model_dump()


@api.get("/v1/experiments/{name}/results", responses={200: {"model": ExperimentResults}})
async def results(name: str, request: Request) -> dict[str, Any]:
    """Per arm, from the experiment's own traffic since its creation: requests it assigned, and requests
    that named one of its arms."""
    gw = _gateway(request)
    exp = _get(gw, name)
    await gw.completions_written()  # the replies that ended before this request count
    data = await asyncio.to_thread(gw.store.experiment_data, exp)
    cfg = CSConfig(tuning_n=gw.settings.sequential_tuning_n, method=gw.settings.sequential_method,
                   min_n=gw.settings.sequential_min_n)
    return await asyncio.to_thread(experiment_results, exp, data, sequential=cfg)


@admin_api.post("/v1/experiments", responses={200: {"model": Experiment}})
async def create_experiment(request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    exp = Experiment.model_validate(await read_json(request))
    return (await gw.put_experiment(exp)).model_dump()


@admin_api.put("/v1/experiments/{name}", responses={200: {"model": Experiment}})
async def replace_experiment(name: str, request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    exp = Experiment.model_validate(await read_json(request))
    if exp.name != name:
        raise bad_request(f"the body names experiment {exp.name!r} but the URL names {name!r}.", "name")
    return (await gw.put_experiment(exp)).model_dump()


@admin_api.patch("/v1/experiments/{name}", responses={200: {"model": Experiment}})
async def patch_experiment(name: str, request: Request) -> dict[str, Any]:
    gw = _gateway(request)
    patch = ExperimentPatch.model_validate(await read_json(request))
    exp = _get(gw, name).model_copy(update=patch.model_dump(exclude_none=True))
    return (await gw.put_experiment(Experiment.model_validate(exp.model_dump()))).model_dump()


@admin_api.delete("/v1/experiments/{name}", responses={200: {"model": ExperimentDeleted}})
async def delete_experiment(name: str, request: Request) -> dict[str, Any]:
    """Remove an experiment (also one whose stored row is no longer valid). Its completions and feedback
    stay stored; an experiment created later under the same name counts only its own traffic."""
    if not await _gateway(request).delete_experiment(name):
        raise APIError(404, f"experiment {name!r} does not exist; GET /v1/experiments lists them.",
                       param="name", code="experiment_not_found")
    return {"name": name, "deleted": True}
