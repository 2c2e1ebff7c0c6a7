"""Every route of the OpenAPI document × every role, on both databases: 401 without credentials, 403
`forbidden_role` for a role below the route's, neither for a role at or above it, and 404 for another
designer's resource.

A route's role is read from the dependencies it declares (`AdminDep` → admin, `LeadDep` → lead,
`CurrentDesigner` or `KeyManager` → designer, none → public), so a route added later is walked with
the role it asks for, without touching this file. The tally is also the reliability figure "auth bypass
attempts tried, 0 succeeded" (printed, and asserted).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from backend.api import deps
from backend.main import create_app
from backend.models import ROLE_RANK, Role
from tests.factories import job_body, sketch_png
from tests.support.accounts import make_account, session_client
from tests.support.api import assert_error
from tests.support.backend import Stack

ROLE_OF_DEPENDENCY = {
    deps._admin: Role.admin,
    deps._lead: Role.lead,
    deps._current_designer: Role.designer,
    deps._token_cache: Role.designer,  # a route that authenticates itself (SSE takes ?access_token=)
}
# Resources a designer owns, by path parameter: another designer asking for them gets a 404.
OWNED = ("job_id", "upload_id", "key_id")
LAST = ("/api/auth/sign-out",)  # ends the session the walk uses: walked after every other route


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def required_role(route: APIRoute) -> Role | None:
    """The least role the route's dependencies ask for; None: a public route."""
    found = [role for call, role in ROLE_OF_DEPENDENCY.items() if call in set(_calls(route.dependant))]
    return max(found, key=ROLE_RANK.__getitem__) if found else None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    role: Role | None

    def url(self, values: dict[str, str]) -> str:
        path = self.path
        for name in OWNED:
            path = path.replace("{" + name + "}", values.get(name, str(uuid.uuid4())))
        while "{" in path:
            start, end = path.index("{"), path.index("}")
            path = path[:start] + str(uuid.uuid4()) + path[end + 1 :]
        return path


def operations() -> list[Operation]:
    app = create_app()
    documented = app.openapi()["paths"]
    ops = []
    for context in iter_route_contexts(app.routes):  # routes of included routers with their full paths
        route, path = context.original_route, context.path
        if isinstance(route, APIRoute) and path in documented:
            for method in sorted((context.methods or set()) & {"GET", "POST", "PUT", "PATCH", "DELETE"}):
                if method.lower() in documented[path]:
                    ops.append(Operation(method, path, required_role(route)))
    return sorted(ops, key=lambda op: (op.path in LAST, op.path, op.method))


def _send(c: httpx.Client, op: Operation, values: dict[str, str] | None = None) -> httpx.Response:
    return c.request(op.method, op.url(values or {}))


def test_the_matrix_knows_the_routes_roles() -> None:
    roles = {(op.method, op.path): op.role for op in operations()}
    assert roles[("GET", "/api/admin/users")] == Role.admin
    assert roles[("GET", "/api/jobs")] == Role.designer
    assert roles[("POST", "/api/keys")] == Role.designer
    assert roles[("POST", "/api/auth/sign-in")] is None
    assert roles[("GET", "/healthz")] is None
    assert len(roles) > 30


def people_of(stack: Stack) -> dict[str, httpx.Client]:
    """Signed-in sessions of alice and bob (designers), lena (lead), root (admin), and anon."""
    for name, role in (("alice", "designer"), ("bob", "designer"), ("lena", "lead"), ("root", "admin")):
        make_account(stack.settings, name, role=role)
    clients = {
        name: session_client(stack.url, f"{name}@studio.test") for name in ("alice", "bob", "lena", "root")
    }
    clients["anon"] = httpx.Client(base_url=stack.url, timeout=30)
    return clients


@pytest.fixture
def people(api_stack: Stack) -> Iterator[dict[str, httpx.Client]]:
    clients = people_of(api_stack)
    yield clients
    for c in clients.values():
        c.close()


def walk(people: dict[str, httpx.Client]) -> tuple[int, list[tuple[str, Operation]]]:
    """Every route × anonymous, each role, an API key and another designer's resource: the attempts
    tried and those that got through. `people`: alice, bob (designers), lena (lead), root (admin), anon.
    Bob is signed out at the end (the sign-out route is walked last)."""
    alice = people["alice"]
    owned = {
        "job_id": alice.post("/api/jobs", json=job_body()).json()["id"],
        "upload_id": alice.post(
            "/api/uploads", files={"file": ("s.png", sketch_png(600), "image/png")}
        ).json()["id"],
        "key_id": alice.post("/api/keys", json={"name": "ci", "scopes": ["render"]}).json()["id"],
    }
    key = alice.post("/api/keys", json={"name": "ci2", "scopes": ["render"]}).json()["key"]
    people["admin_key"] = httpx.Client(base_url=str(alice.base_url), headers={"x-api-key": key}, timeout=30)
    tried, bypassed = 0, []
    for op in operations():
        if op.role is None:
            assert _send(people["anon"], op).status_code not in (401, 403), op
            continue
        tried += 1
        if _send(people["anon"], op).status_code != 401:
            bypassed.append(("anonymous", op))
        for name, rank in (("bob", Role.designer), ("lena", Role.lead), ("root", Role.admin)):
            r = _send(people[name], op)
            tried += 1
            if rank.at_least(op.role):
                assert r.status_code not in (401, 403), (name, op, r.text)
            elif r.status_code != 403 or r.json()["error"]["code"] != "forbidden_role":
                bypassed.append((name, op))
        if op.role is not Role.designer:  # an API key acts as a designer, whoever made it
            tried += 1
            r = _send(people["admin_key"], op)
            if r.status_code != 403:
                bypassed.append(("api key", op))
        if op.role is Role.designer and any("{" + name + "}" in op.path for name in OWNED):
            tried += 1
            r = _send(people["bob"], op, owned)  # alice's resource, asked for by bob
            if r.status_code != 404:
                bypassed.append(("another designer's resource", op))
    return tried, bypassed


def test_every_route_answers_every_role_as_its_dependencies_say(people: dict[str, httpx.Client]) -> None:
    tried, bypassed = walk(people)
    print(f"\nauth bypass attempts tried: {tried}, succeeded: {len(bypassed)}")  # noqa: T201 (the figure)
    assert bypassed == []
    assert tried > 100
    assert_error(people["bob"].get("/api/me"), 401, "unauthorized")  # the walk signed bob out, last
