"""The OpenAPI document a newcomer can use: the security schemes (so /docs offers *Authorize*), and every
status a route can answer, each error with the one error shape as its body.

The statuses every route shares are added here by what the route takes, rather than listed on each
route: any `/api` route answers 401 without credentials and 503 while the database is unreachable; one
with a body answers 400 when it cannot be read and 413 past its cap (`body_limit`); one with parameters
or a body answers 422; one with an id in its path answers 404. The routes list their own (409, 415, 429).
A job's `style` lists the style manifest's ids: the manifest is fixed for the life of the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from backend.schemas import STYLE_PATTERN, ErrorResponse

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "a designer's token, an API key, or a sign-in session's token",
    },
    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "an API key"},
}
SHARED = {
    400: "the body could not be read",
    401: "missing or invalid credentials",
    404: "no such item for this designer",
    413: "the body is larger than this route accepts",
    422: "invalid request (details per field)",
    503: "the database is busy or unreachable (Retry-After)",
}
METHODS = frozenset({"get", "put", "post", "delete", "patch"})
# How a browser gets a session: these take no credentials.
PUBLIC_PATHS = frozenset({"/api/auth/sign-in", "/api/auth/oidc", "/api/auth/password"})


def _shared_statuses(path: str, operation: dict[str, Any]) -> list[int]:
    params = operation.get("parameters", [])
    has_body = "requestBody" in operation
    statuses = []
    if path.startswith("/api/"):
        statuses += [401, 503]
    if has_body:
        statuses += [400, 413]
    if any(p["in"] == "path" for p in params):
        statuses.append(404)
    if params or has_body:
        statuses.append(422)
    return statuses


def _document_operation(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in _shared_statuses(path, operation):
        responses.setdefault(str(status), {"description": SHARED[status]})
    for status, response in responses.items():
        if int(status) >= 400 and response.get("content") and "application/json" not in response["content"]:
            continue  # a page's own error (HTML), as the route declares it
        content = response.get("content", {}).get("application/json", {}).get("schema", {})
        if int(status) >= 400 and (not content or "HTTPValidationError" in content.get("$ref", "")):
            response["content"] = {"application/json": {"schema": ERROR_REF}}
    if path in PUBLIC_PATHS:
        operation["security"] = []  # said outright: this route takes no credentials
    elif path.startswith("/api/"):
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]


def _style_enums(node: Any, style_ids: list[str]) -> None:
    """Every style id schema in the document (bodies, inline payloads, query parameters) lists the ids."""
    if isinstance(node, dict):
        if node.get("pattern") == STYLE_PATTERN:
            node["enum"] = style_ids
        for value in node.values():
            _style_enums(value, style_ids)
    elif isinstance(node, list):
        for value in node:
            _style_enums(value, style_ids)


def _maxima(schemas: dict[str, Any], maxima: dict[str, dict[str, int]]) -> None:
    """Limits that are this deployment's settings (an API key's rate and quota), said in the schema."""
    for model, fields in maxima.items():
        properties = schemas.get(model, {}).get("properties", {})
        for name, maximum in fields.items():
            prop = properties.get(name, {})
            for branch in prop.get("anyOf", [prop]):
                if branch.get("type") == "integer":
                    branch["maximum"] = maximum


def document(
    schema: dict[str, Any], style_ids: list[str], maxima: dict[str, dict[str, int]] | None = None
) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs", {}))
    schemas["ErrorResponse"] = error
    components["securitySchemes"] = SECURITY_SCHEMES
    _style_enums(schema, style_ids)
    _maxima(schemas, maxima or {})
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method in METHODS:
                _document_operation(path, operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install_openapi(
    app: FastAPI, style_ids: list[str], maxima: dict[str, dict[str, int]] | None = None
) -> None:
    """`app.openapi()` answers the documented schema (built once, like FastAPI's own)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        if "securitySchemes" not in schema.get("components", {}):
            document(schema, style_ids, maxima)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
