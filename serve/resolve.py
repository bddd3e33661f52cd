"""Turn (model, body, headers) into a Route: experiments, overrides, sticky sessions, the router."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from empathy.layout import grid_argmax
from serve.catalog import ROUTED_NAME
from serve.errors import APIError, bad_request
from serve.experiments import Arm, Experiment, assign
from serve.routing import (
    Route,
    arm_route,
    blend_route,
    nearest_on_grid,
    override_route,
    session_key,
    with_source,
)
from serve.state import Gateway


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    if isinstance(body.get("messages"), list):
        return [m for m in body["messages"] if isinstance(m, dict)]
    prompt = body.get("prompt")
    return [{"role": "user", "content": prompt if isinstance(prompt, str) else str(prompt or "")}]


async def routed(gw: Gateway, body: Mapping[str, Any], key: str) -> Route:
    """The router's choice for the conversation (sticky: decided once per conversation, remembered in
    memory and in the store)."""
    sticky = gw.sticky.get(key) or await _stored_route(gw, key)
    if sticky is not None:
        return with_source(sticky, "sticky")
    catalog = gw.catalog
    if not catalog.grid:
        route = Route(adapter="base", source="default")
    elif gw.router is None:
        route = blend_route(nearest_on_grid(gw.settings.default_blend, catalog.grid), catalog, "default")
    else:
        # The encoder takes milliseconds of CPU: never on the event loop.
        probs = await asyncio.to_thread(gw.router.predict, _text_messages(body))
        weight = grid_argmax(gw.router.grid, probs)[0]
        route = blend_route(nearest_on_grid(weight, catalog.grid), catalog, "router", probs)
    adapter, blend, kept = await asyncio.to_thread(gw.store.put_route, key, route.adapter, route.blend,
                                                   list(route.probs) if route.probs is not None else None)
    if (adapter, blend) != (route.adapter, route.blend):  # a concurrent request decided first: use its route
        route = Route(adapter=adapter, blend=blend, source="sticky",
                      probs=tuple(kept) if kept is not None else None)
    gw.sticky.put(key, route)
    gw.metrics.router_weight.labels(route.source).observe(route.blend if route.blend is not None else 0.0)
    return route


async def _stored_route(gw: Gateway, key: str) -> Route | None:
    """A decision stored by an earlier gateway process, if its adapter is still served."""
    row = await asyncio.to_thread(gw.store.get_route, key)
    if row is None or (row[0] != "base" and row[0] not in gw.catalog.paths):
        return None
    route = Route(adapter=row[0], blend=row[1], source="sticky",
                  probs=tuple(row[2]) if row[2] is not None else None)
    gw.sticky.put(key, route)
    return route


def chosen_arm(experiment: Experiment, override: Any) -> Arm:
    arms = {a.name: a for a in experiment.arms}
    if not isinstance(override, dict) or set(override) != {"arm"} or override["arm"] not in arms:
        raise bad_request(f'for experiment {experiment.name!r}, "empathy" must be {{"arm": NAME}} with NAME '
                          f"one of {sorted(arms)}.", "empathy")
    return arms[override["arm"]]


def _text_messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    """Messages with plain-text content (content parts are joined), as the router's features expect."""
    out = []
    for m in _messages(body):
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        out.append({"role": str(m.get("role", "user")), "content": str(content or "")})
    return out


async def resolve(gw: Gateway, model: str, body: dict[str, Any], headers: Mapping[str, str],
                  later: list[asyncio.Task[Any]] | None = None) -> Route:
    """The route of one request; pops the `empathy` override field from `body`. With `later`, a store write
    the route does not depend on (an arm assignment) is started there instead of awaited: the caller
    awaits it before it answers (`Call.settle`), so the request does not wait for it before vLLM does."""
    override = body.pop("empathy", None)
    experiment = model in gw.experiments and gw.experiments[model].active
    if override is not None and model != ROUTED_NAME and not experiment:
        raise bad_request(f'"empathy" overrides apply to model "{ROUTED_NAME}" (blend, expert) or to an '
                          f'active experiment (arm) only, not {model!r}.', "empathy")
    if experiment:
        return await _experiment_route(gw, model, body, headers, override, later)
    if model == ROUTED_NAME:
        if override is not None:
            return override_route(override, gw.catalog)
        return await routed(gw, body, session_key(headers, body))
    adapter = gw.catalog.adapter_for_model(model) or (model if model in gw.catalog.paths else None)
    if adapter is None:
        raise APIError(404, f"model {model!r} does not exist; GET /v1/models lists the served models.",
                       param="model", code="model_not_found")
    fixed = arm_route(model, gw.catalog)
    return with_source(fixed, "fixed") if fixed else Route(adapter=adapter)


async def _experiment_route(gw: Gateway, name: str, body: dict[str, Any], headers: Mapping[str, str],
                            override: Any = None, later: list[asyncio.Task[Any]] | None = None) -> Route:
    """The arm assigned to the user by hash, or with `{"arm": NAME}` the arm asked for (the arena shows
    two arms to one user, so it names them; such requests are not assignments)."""
    subject = session_key(headers, body)
    if override is None:
        arm = assign(gw.experiments[name], subject)
        write = asyncio.ensure_future(asyncio.to_thread(gw.store.add_assignment, name, subject, arm.name))
        if later is None:
            await write
        else:
            later.append(write)
    else:
        arm = chosen_arm(gw.experiments[name], override)
    route = arm_route(arm.model, gw.catalog)
    if route is None:  # the arm is the routed model itself
        route = await routed(gw, body, f"{name}:{subject}")
    return Route(adapter=route.adapter, blend=route.blend, source="experiment", experiment=name, arm=arm.name,
                 probs=route.probs)
