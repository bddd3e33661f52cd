"""The gateway's OpenAPI spec (request and response bodies of every endpoint) and the routes that show it,
/openapi.json and /docs, behind EMPATHY_DOCS_ACCESS."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import TypeAdapter

from serve.access import check_access
from serve.schemas import ERRORS, REQUEST_BODIES

if TYPE_CHECKING:
    from empathy.settings import Settings

api = APIRouter(include_in_schema=False)
REF = "#/components/schemas/{model}"


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec of the routes plus the request bodies that handlers read themselves (to keep
    unknown OpenAI/vLLM fields and check the raw JSON first), and bearer auth."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, routes=app.routes,
                       description="OpenAI-compatible gateway over vLLM with the `empathy` extension "
                       "(routing, experiments, feedback). Errors: `{error: {message, type, param, code}}`.")
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for operations in spec["paths"].values():  # path parameters that fail validation are 400 here, not 422
        for operation in operations.values():
            operation["responses"].pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for (path, method), kind in REQUEST_BODIES.items():
        body = TypeAdapter(kind).json_schema(ref_template=REF)
        schemas.update(body.pop("$defs", {}))
        if isinstance(kind, type):  # a model: a named component, like FastAPI's own
            schemas[kind.__name__] = body
            body = {"$ref": REF.format(model=kind.__name__)}
        operation = spec["paths"][path][method]
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    _caps(schemas, app.state.gateway.settings)
    spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    spec["security"] = [{"bearer": []}, {}]
    app.openapi_schema = spec
    return spec


def _caps(schemas: dict[str, Any], settings: Settings) -> None:
    """This gateway's limits as `maximum`s of the completion requests' integer fields."""
    limits = {"n": settings.max_n, "max_tokens": settings.max_tokens_cap,
              "max_completion_tokens": settings.max_tokens_cap}
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        properties = schemas.get(name, {}).get("properties", {})
        for field, limit in limits.items():
            for branch in properties.get(field, {}).get("anyOf", []):
                if branch.get("type") == "integer":
                    branch["maximum"] = limit


@api.get("/openapi.json", responses=ERRORS)
async def openapi_json(request: Request) -> JSONResponse:
    check_access(request, "docs_access")
    return JSONResponse(build_openapi(request.app))


@api.get("/docs", responses=ERRORS)
async def docs(request: Request) -> HTMLResponse:
    check_access(request, "docs_access")
    return get_swagger_ui_html(openapi_url="/openapi.json", title="empathy-router gateway")
