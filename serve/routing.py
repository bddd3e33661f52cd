"""Routing decisions for the routed model `empathy`: router, sticky sessions, overrides (pure parts).

The async glue that calls the router off the event loop lives in `serve/resolve.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from serve.catalog import EXPERT_PREFIX, EXPERT_WEIGHT, Catalog
from serve.errors import bad_request

GRID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Route:
    """Where one request goes (`adapter` is the vLLM model name) and why."""

    adapter: str
    blend: float | None = None
    source: str = "fixed"  # router | sticky | override | experiment | default | fixed
    experiment: str | None = None
    arm: str | None = None
    probs: tuple[float, ...] | None = None

    def body_field(self) -> dict[str, Any]:
        """The reply's `empathy` field (the fields as a dict; `dataclasses.asdict` costs 6 us per reply)."""
        return {"adapter": self.adapter, "blend": self.blend, "source": self.source,
                "experiment": self.experiment, "arm": self.arm,
                "probs": list(self.probs) if self.probs is not None else None}

    def header(self) -> str:
        blend = "none" if self.blend is None else f"{self.blend:g}"
        parts = [f"blend={blend}", f"adapter={self.adapter}", f"source={self.source}"]
        if self.experiment:
            parts += [f"experiment={self.experiment}", f"arm={self.arm}"]
        return "; ".join(parts)


_KEY_JSON = json.JSONEncoder(sort_keys=True, default=str)  # made once (`json.dumps` makes one per call)


def session_key(headers: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """The conversation's identity: `x-session-id`, else `user`, else a hash of the first user message
    (which stays the same on every later turn of the conversation)."""
    if headers.get("x-session-id"):
        return _bounded(f"session:{headers['x-session-id']}")
    if isinstance(body.get("user"), str) and body["user"]:
        return _bounded(f"user:{body['user']}")
    first = next((m.get("content") for m in body.get("messages") or [] if isinstance(m, dict)
                  and m.get("role") == "user"), body.get("prompt", ""))
    digest = hashlib.sha256(_KEY_JSON.encode(first).encode()).hexdigest()[:16]
    return f"first:{digest}"


def _bounded(key: str, limit: int = 200) -> str:
    """Long identities are stored by their hash (the store keeps at most 256 characters)."""
    if len(key) <= limit:
        return key
    return f"{key.split(':', 1)[0]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def snap(weight: Any, grid: Sequence[float], param: str = "empathy.blend") -> float:
    """A requested blend weight as the grid weight it names; 400 when off the grid or out of [0, 1]."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise bad_request(f"{param} must be a number in [0, 1]; got {weight!r}.", param)
    if not 0.0 <= weight <= 1.0:
        raise bad_request(f"{param}={weight} is out of range; blend weights lie in [0, 1].", param)
    if not grid:
        raise bad_request("no blends are served; train them with `empathy train blends`.", param)
    nearest = min(grid, key=lambda w: abs(w - weight))
    if abs(nearest - weight) > GRID_TOLERANCE:
        raise bad_request(f"{param}={weight} is not on the served grid {list(grid)}; pick one of those.",
                          param, code="off_grid")
    return nearest


def nearest_on_grid(weight: float, grid: Sequence[float]) -> float:
    return min(grid, key=lambda w: abs(w - weight))


def expert_route(expert: str, catalog: Catalog, source: str) -> Route:
    if expert not in catalog.experts:
        known = ", ".join(sorted(catalog.experts)) or "none trained"
        raise bad_request(f"unknown expert {expert!r}; served experts: {known}.", "empathy.expert")
    return Route(adapter=catalog.experts[expert], blend=EXPERT_WEIGHT.get(expert), source=source)


def blend_route(weight: float, catalog: Catalog, source: str, probs: Sequence[float] | None = None) -> Route:
    return Route(adapter=catalog.blends[weight], blend=weight, source=source,
                 probs=tuple(probs) if probs is not None else None)


def override_route(override: Any, catalog: Catalog) -> Route:
    """`{"blend": 0.75}` or `{"expert": "sensibility"}` from the request body."""
    if not isinstance(override, dict) or len(override.keys() & {"blend", "expert"}) != 1:
        raise bad_request('"empathy" must be {"blend": <weight>} or {"expert": "<name>"}.', "empathy")
    if "expert" in override:
        return expert_route(str(override["expert"]), catalog, "override")
    return blend_route(snap(override["blend"], catalog.grid), catalog, "override")


def arm_route(model: str, catalog: Catalog) -> Route | None:
    """A fixed arm target (`blend:0.75`, an expert's or the base model's name); None for `empathy`."""
    if model.startswith("blend:"):
        try:
            weight = float(model.removeprefix("blend:"))
        except ValueError:
            raise bad_request(f"arm model {model!r} is not blend:<weight>.", "model") from None
        return blend_route(snap(weight, catalog.grid, "model"), catalog, "experiment")
    if model.startswith(EXPERT_PREFIX) and model.removeprefix(EXPERT_PREFIX) in catalog.experts:
        return expert_route(model.removeprefix(EXPERT_PREFIX), catalog, "experiment")
    adapter = catalog.adapter_for_model(model)
    return Route(adapter=adapter, source="experiment") if adapter else None


def with_source(route: Route, source: str) -> Route:
    return replace(route, source=source)


class StickyCache:
    """Bounded LRU of conversation -> routing decision, so every turn of a conversation uses one blend
    (and vLLM's prefix cache keeps working)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, Route] = OrderedDict()

    def get(self, key: str) -> Route | None:
        route = self._items.get(key)
        if route is not None:
            self._items.move_to_end(key)
        return route

    def put(self, key: str, route: Route) -> None:
        self._items[key] = route
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
