"""Every error path of the API, walked once: each answers the one shape `{"error": {"code", "message",
"details"}}` with its stable code, on SQLite and PostgreSQL.

The paths are tables of (what, request, status, code). `test_every_code_the_routes_raise_is_walked` reads
the routes' source: a code added to a route without a walk here fails it. Behaviour around an error (what
a refused upload leaves behind, quotas over time...) stays with the tests of that route; this module owns
the shape and the codes.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from backend import downloads
from backend.errors import AppError
from backend.main import create_app
from backend.models import Role, new_id
from backend.signed_urls import sign
from backend.users import ensure_designer, set_role
from tests.factories import job_body, sketch_png
from tests.support.accounts import make_account
from tests.support.api import assert_error
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, ApiServer, Stack, make_settings, start_stack
from tests.support.comfy import EmulatorProcess, SubmittedPrompts, Workload
from tests.support.cutout import product_photo, write_matte_model
from tests.support.db import PG_ADMIN_URL
from tests.support.network import Guard

ROOT = Path(__file__).resolve().parents[2]
AUTH_MODULES = ("auth.py", "api_keys.py")  # raise on behalf of every route
UPLOAD_LIMIT = 64 * 1024


@dataclass
class Walk:
    stack: Stack
    alice: httpx.Client
    bob: httpx.Client
    anon: httpx.Client
    job_id: str = ""
    read_key: str = ""
    read_key_id: str = ""
    render_key: str = ""
    carol: httpx.Client | None = None
    upload_id: str = ""
    made: dict[str, str] = field(default_factory=dict)  # ids a table's cases name (projects, links)


Request = Callable[[Walk], httpx.Response]
Case = tuple[str, Request, int, str]


@contextlib.contextmanager
def walking(stack: Stack, job: dict[str, Any] | None = None) -> Iterator[Walk]:
    """Alice, Bob and an anonymous client on `stack`, and one queued job of Alice's (`job` its parameters)."""
    with stack.client(DEMO_TOKEN) as alice, stack.client(OTHER_TOKEN) as bob:
        with httpx.Client(base_url=stack.url, timeout=30) as anon:
            w = Walk(stack, alice, bob, anon)
            w.job_id = alice.post("/api/jobs", json=job_body(**(job or {}))).json()["id"]
            read = alice.post("/api/keys", json={"name": "reader", "scopes": ["read"]}).json()
            w.read_key, w.read_key_id = read["key"], read["id"]
            render = alice.post("/api/keys", json={"name": "renderer", "scopes": ["render"]}).json()
            w.render_key = render["key"]
            yield w


@pytest.fixture
def walk(api_stack: Stack) -> Iterator[Walk]:
    with walking(api_stack) as w:
        yield w


def check(cases: list[Case], w: Walk) -> list[dict[str, Any]]:
    """Every case answered its status and code in the one shape; their error objects."""
    errors, failures = [], []
    for what, request, status, code in cases:
        r = request(w)
        try:
            errors.append(assert_error(r, status, code))
        except AssertionError as exc:
            failures.append(f"{what}: {exc}")
        assert "Traceback" not in r.text and "sqlalchemy" not in r.text.lower(), (what, r.text)
    assert failures == []
    return errors


def upload(c: httpx.Client, data: bytes, ctype: str = "image/png") -> httpx.Response:
    return c.post("/api/uploads", files={"file": ("plan.png", data, ctype)})


def json_body(raw: bytes) -> Request:
    return lambda w: w.alice.post("/api/jobs", content=raw, headers={"content-type": "application/json"})


UNKNOWN = new_id()
AUTH: list[Case] = [
    ("no token", lambda w: w.anon.get("/api/jobs"), 401, "unauthorized"),
    ("a wrong token", lambda w: w.anon.get("/api/jobs", headers={"Authorization": "Bearer wrong"}), 401,
     "unauthorized"),
    ("not a bearer token", lambda w: w.anon.get("/api/jobs", headers={"Authorization": "Basic abc"}), 401,
     "unauthorized"),
    ("no token on a write", lambda w: w.anon.post("/api/jobs", json=job_body()), 401, "unauthorized"),
    ("a wrong API key", lambda w: w.anon.get("/api/jobs", headers={"x-api-key": "sk_studio_0_wrong"}), 401,
     "unauthorized"),
]  # fmt: skip
SCOPES: list[Case] = [
    ("a read key starting a render", lambda w: w.anon.post(
        "/api/jobs", json=job_body(), headers={"x-api-key": w.read_key}), 403, "insufficient_scope"),
]  # fmt: skip
VALIDATION: list[Case] = [
    ("not JSON", json_body(b"{not json"), 422, "invalid_input"),
    ("a list for a body", lambda w: w.alice.post("/api/jobs", json=["a", "list"]), 422, "invalid_input"),
    ("no prompt", lambda w: w.alice.post("/api/jobs", json=job_body(prompt=None)), 422, "invalid_input"),
    ("width off the grid", lambda w: w.alice.post("/api/jobs", json=job_body(width=500)), 422,
     "invalid_input"),
    ("an unknown style", lambda w: w.alice.post("/api/jobs", json=job_body(style="baroque")), 422,
     "invalid_style"),
    ("a sketch job without its upload", lambda w: w.alice.post("/api/jobs", json=job_body(kind="sketch")),
     422, "invalid_input"),
    ("a bad Idempotency-Key", lambda w: w.alice.post(
        "/api/jobs", json=job_body(), headers={"Idempotency-Key": "a b"}), 422, "invalid_input"),
    ("limit 0", lambda w: w.alice.get("/api/jobs", params={"limit": 0}), 422, "invalid_input"),
    ("an unknown status", lambda w: w.alice.get("/api/jobs", params={"status": "lost"}), 422,
     "invalid_input"),
    ("a forged cursor", lambda w: w.alice.get("/api/jobs", params={"cursor": "!!!"}), 422, "invalid_input"),
    ("a key above the deployment's limit", lambda w: w.alice.post(
        "/api/keys", json={"name": "x", "scopes": ["read"], "renders_per_day": 10**9}), 422,
     "key_limit_too_high"),
    ("a retry body of the wrong type", lambda w: w.alice.post(
        f"/api/jobs/{w.job_id}/retry", json={"new_seed": [1]}), 422, "invalid_input"),
    ("an upload without its file field", lambda w: w.alice.post("/api/uploads", data={"x": "1"}), 422,
     "invalid_input"),
    ("an empty upload", lambda w: upload(w.alice, b""), 422, "empty_upload"),
    ("a sketch too small", lambda w: upload(w.alice, sketch_png(32, 32)), 422, "image_too_small"),
]  # fmt: skip
NOT_FOUND: list[Case] = [
    ("an unknown job", lambda w: w.alice.get(f"/api/jobs/{UNKNOWN}"), 404, "job_not_found"),
    ("another designer's job", lambda w: w.bob.get(f"/api/jobs/{w.job_id}"), 404, "job_not_found"),
    ("cancel someone else's job", lambda w: w.bob.post(f"/api/jobs/{w.job_id}/cancel"), 404,
     "job_not_found"),
    ("retry an unknown job", lambda w: w.alice.post(f"/api/jobs/{UNKNOWN}/retry"), 404, "job_not_found"),
    ("events of an unknown job", lambda w: w.alice.get(f"/api/jobs/{UNKNOWN}/events"), 404, "job_not_found"),
    ("an unknown image", lambda w: w.alice.get(f"/api/images/{UNKNOWN}"), 404, "image_not_found"),
    ("an unknown thumbnail", lambda w: w.alice.get(f"/api/images/{UNKNOWN}/thumbnail"), 404,
     "image_not_found"),
    ("an unknown image's meta", lambda w: w.alice.get(f"/api/images/{UNKNOWN}/meta"), 404, "image_not_found"),
    ("an unknown upload", lambda w: w.alice.get(f"/api/uploads/{UNKNOWN}"), 404, "upload_not_found"),
    ("an unknown upload's image", lambda w: w.alice.get(f"/api/uploads/{UNKNOWN}/image"), 404,
     "upload_not_found"),
    ("an unknown upload's preview", lambda w: w.alice.get(f"/api/uploads/{UNKNOWN}/preview"), 404,
     "upload_not_found"),
    ("an unknown style's preview", lambda w: w.alice.get("/api/styles/baroque/preview"), 404,
     "style_not_found"),
    ("another designer's API key", lambda w: w.bob.delete(f"/api/keys/{w.read_key_id}"), 404,
     "key_not_found"),
    ("an upload that is not one's own", lambda w: w.alice.post(
        "/api/jobs", json=job_body(kind="sketch", upload_id=UNKNOWN)), 404, "unknown_upload"),
    ("an unknown route", lambda w: w.alice.get("/api/nothing-here"), 404, "not_found"),
    ("a method the route has not", lambda w: w.alice.delete("/api/jobs"), 405, "method_not_allowed"),
]  # fmt: skip
MEDIA: list[Case] = [
    ("a PDF", lambda w: upload(w.alice, b"%PDF-1.4 fake", "application/pdf"), 415, "unsupported_media_type"),
    ("SVG sent as PNG", lambda w: upload(w.alice, b'<svg xmlns="http://www.w3.org/2000/svg"/>'), 415,
     "not_an_image"),
    ("over the byte limit", lambda w: upload(w.alice, b"\0" * (UPLOAD_LIMIT + 1)), 413, "upload_too_large"),
    ("a JSON body past its cap, refused unread", json_body(b'{"prompt": "%s"}' % (b"a" * 70_000)), 413,
     "too_large"),
]  # fmt: skip
LIMITS: list[Case] = [
    ("one job too many", lambda w: w.alice.post("/api/jobs", json=job_body()), 429, "too_many_active_jobs"),
    ("one upload too many", lambda w: upload(w.alice, sketch_png(602)), 429, "upload_quota_exceeded"),
    ("one request too many with a key", lambda w: w.anon.get("/api/jobs", headers={"x-api-key": w.read_key}),
     429, "key_rate_limited"),
    ("one render too many with a key", lambda w: w.anon.post(
        "/api/jobs", json=job_body(), headers={"x-api-key": w.render_key}), 429, "key_quota_exceeded"),
]  # fmt: skip


def _model_without_bucket(w: Walk) -> httpx.Response:
    """A lead adds a model to a server without MODELS_BUCKET."""
    import asyncio

    from backend.models import Role
    from backend.users import set_role

    asyncio.run(set_role(w.stack.settings, "bob", Role.lead))
    params = {"folder": "loras", "file": "x.safetensors", "licence": "mit"}
    return w.bob.post("/api/models/upload", params=params, content=b"{}")


CONFLICTS: list[Case] = [
    ("a model added where adding is off", _model_without_bucket, 503, "models_bucket_unset"),
    ("cancel a job that succeeded", lambda w: w.alice.post(f"/api/jobs/{w.job_id}/cancel"), 409,
     "job_already_ended"),
    ("an Idempotency-Key reused for another body", lambda w: w.alice.post(
        "/api/jobs", json=job_body(), headers={"Idempotency-Key": "used-once"}), 409,
     "idempotency_key_reused"),
    ("an image whose file is gone", lambda w: w.alice.get(_first_image(w)), 404, "file_missing"),
    ("a style without its preview", lambda w: w.alice.get("/api/styles/indochine/preview"), 404,
     "preview_missing"),
]  # fmt: skip
DROP_IN: list[Case] = [
    ("a render cancelled while the drop-in waited", lambda w: w.alice.post(
        "/dev/text2image", json={"text": "hall"}, headers={"Idempotency-Key": "cancelled"}), 409,
     "job_cancelled"),
    ("a render that failed", lambda w: _dropin_until_ended(w, {"text": "hall", "steps": 2}), 502,
     "render_failed"),
    ("a forged image link", lambda w: w.anon.get(
        f"/api/images/{UNKNOWN}/shared", params={"expires": 2**40, "signature": "0" * 64}), 403,
     "invalid_signature"),
    ("an expired image link", lambda w: w.anon.get(f"/api/images/{UNKNOWN}/shared?" + sign(
        w.stack.settings.image_url_secret, UNKNOWN, 10, now=0).query()), 403, "link_expired"),
]  # fmt: skip


def _dropin_until_ended(w: Walk, body: dict[str, Any], timeout_s: float = 30.0) -> httpx.Response:
    """The drop-in asked again (same Idempotency-Key: the same job) while it still answers 202: on a loaded
    machine the render may take longer than the stack's short drop-in wait to end."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = w.alice.post("/dev/text2image", json=body, headers={"Idempotency-Key": "ends-badly"})
        if r.status_code != 202 or time.monotonic() > deadline:
            return r


TPL = {
    "name": "walk-tpl",
    "title": "Walk",
    "graph": {
        "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    },
    "inputs": [],
    "outputs": {"results": ["2"]},
}
TEMPLATES: list[Case] = [
    ("a designer publishing", lambda w: w.bob.post("/api/templates", json=TPL), 403, "forbidden_role"),
    ("an invalid declaration", lambda w: w.alice.post("/api/templates", json={**TPL, "name": "X"}), 422,
     "template_invalid"),
    ("an unknown template", lambda w: w.alice.get("/api/templates/nothing-here"), 404, "template_not_found"),
    ("a job of an unknown template", lambda w: w.alice.post(
        "/api/jobs", json={"template": "nothing-here", "inputs": {}}), 404, "template_not_found"),
    ("an unknown version", lambda w: w.alice.get("/api/templates/text/versions/99"), 404,
     "template_version_not_found"),
    ("a built-in's draft", lambda w: w.alice.put("/api/templates/text/draft", json={**TPL, "name": "text"}),
     409, "template_builtin"),
    ("a name taken", lambda w: w.alice.post("/api/templates", json={**TPL, "name": "text"}), 409,
     "template_exists"),
    ("a draft under another name", lambda w: w.alice.put("/api/templates/walk-tpl/draft", json=TPL | {
        "name": "other"}), 422, "template_name_mismatch"),
    ("publishing without a draft", lambda w: w.alice.post("/api/templates/walk-tpl/publish"), 409,
     "template_no_draft"),
    ("another lead's template", lambda w: w.carol.post("/api/templates/walk-tpl/publish"), 403,
     "not_template_owner"),
    ("a job of a retired template", lambda w: w.alice.post(
        "/api/jobs", json={"template": "retired-tpl", "inputs": {}}), 409, "template_retired"),
    ("retiring a draft", lambda w: w.alice.post("/api/templates/draft-tpl/retire"), 409,
     "template_not_published"),
    ("a template image too small", lambda w: w.alice.post("/api/jobs", json={
        "template": "image-tpl", "inputs": {"picture": w.upload_id}}), 422, "image_too_small"),
    ("a sketch where the product template takes a product photo", lambda w: w.alice.post("/api/jobs", json={
        "template": "product", "inputs": {"product": w.upload_id, "prompt": "a loft"}}), 422,
     "wrong_upload_role"),
    ("adjusting the cut-out of a sketch", lambda w: w.alice.post(f"/api/uploads/{w.upload_id}/cutout", json={
        "threshold": 128}), 409, "not_a_product"),
    ("a template without a preview", lambda w: w.bob.get("/api/templates/text/preview"), 404,
     "preview_not_found"),
    ("a preview that is not the lead's render", lambda w: w.alice.put(
        "/api/templates/walk-tpl/preview", json={"image_id": UNKNOWN}), 404, "image_not_found"),
]  # fmt: skip
ACCOUNTS: list[Case] = [
    ("a wrong password", lambda w: w.anon.post("/api/auth/sign-in", json={
        "email": "alice@studio.test", "password": "not the password"}), 401, "invalid_credentials"),
    ("a used-up or forged password link", lambda w: w.anon.post("/api/auth/password", json={
        "token": "pwr_forged", "password": "a long enough passphrase"}), 404, "reset_link_invalid"),
    ("an ID token without an identity provider", lambda w: w.anon.post(
        "/api/auth/oidc", json={"id_token": "a.b.c"}), 404, "oidc_not_configured"),
    ("an invitation of a name taken", lambda w: w.bob.post("/api/admin/users", json={
        "name": "alice", "email": "other@studio.test"}), 409, "account_exists"),
    ("an unknown designer", lambda w: w.bob.patch(f"/api/admin/users/{UNKNOWN}", json={"role": "lead"}), 404,
     "designer_not_found"),
    ("an admin route for a designer", lambda w: w.alice.get("/api/admin/users"), 403, "forbidden_role"),
]  # fmt: skip
SOON = "2000-01-01T00:00:00+00:00"
PROJECTS: list[Case] = [
    ("someone else's project", lambda w: w.bob.get(f"/api/projects/{w.made['project']}"), 404,
     "project_not_found"),
    ("a project name taken", lambda w: w.alice.post("/api/projects", json={"name": "Walk"}), 409,
     "project_exists"),
    ("someone else's render marked", lambda w: w.bob.put(f"/api/jobs/{w.job_id}/favourite"), 404,
     "job_not_found"),
    ("someone else's image shared", lambda w: w.bob.post("/api/share-links", json={
        "image_ids": [UNKNOWN]}), 404, "image_not_found"),
    ("a share link that ended before it began", lambda w: w.alice.post("/api/share-links", json={
        "project_id": w.made["project"], "expires_at": SOON}), 422, "invalid_expiry"),
    ("someone else's share link", lambda w: w.bob.delete(f"/api/share-links/{w.made['link']}"), 404,
     "share_link_not_found"),
    ("an expired share link", lambda w: w.anon.get(f"/s/{w.made['expired']}/images/{UNKNOWN}"), 410,
     "share_link_expired"),
    ("a ZIP over the limits", lambda w: w.alice.post("/api/images/zip", json={
        "project_id": w.made["project"]}), 413, "zip_too_large"),
]  # fmt: skip


def as_role(role: str, data: bytes) -> Request:
    return lambda w: w.alice.post(
        "/api/uploads", files={"file": ("p.jpg", data, "image/jpeg")}, data={"role": role}
    )


def _model_broken(w: Walk) -> httpx.Response:
    w.stack.settings.rembg_model_path.write_bytes(b"not an ONNX model")
    return as_role("product", product_photo())(w)


def _model_gone(w: Walk) -> httpx.Response:
    w.stack.settings.rembg_model_path.unlink()
    return as_role("product", product_photo())(w)


def _adjust_a_sketch(w: Walk) -> httpx.Response:
    sketch = upload(w.alice, sketch_png(600)).json()["id"]
    return w.alice.post(f"/api/uploads/{sketch}/cutout", json={})


CUTOUT: list[Case] = [
    ("a product photo without a product", as_role("product", product_photo(colour=(250, 250, 250))), 422,
     "no_foreground"),
    ("a product filling the frame", as_role("product", product_photo(box=(0.02, 0.02, 0.98, 0.98))), 422,
     "product_fills_frame"),
    ("a sketch as a style photo", as_role("style_photo", sketch_png()), 422, "style_photo_is_sketch"),
    ("an unknown upload role", as_role("painting", sketch_png()), 422, "invalid_input"),
    ("a cut-out adjusted to nothing", lambda w: w.alice.post(
        f"/api/uploads/{w.upload_id}/cutout", json={"erode_px": 20}), 422, "cutout_empty"),
    ("a threshold out of range", lambda w: w.alice.post(
        f"/api/uploads/{w.upload_id}/cutout", json={"threshold": 255}), 422, "invalid_input"),
    ("adjusting a sketch's cut-out", _adjust_a_sketch, 409, "not_a_product"),
    ("an unknown upload's cut-out", lambda w: w.alice.post(f"/api/uploads/{UNKNOWN}/cutout", json={}), 404,
     "upload_not_found"),
    ("a product photo and a broken model", _model_broken, 503, "cutout_unavailable"),
    ("a product photo and no model", _model_gone, 503, "cutout_model_missing"),
]  # fmt: skip
# Answered by the handlers rather than raised by a route: walked by the tests below.
HANDLED = {"database_unavailable": 503, "internal_error": 500}


def _first_image(w: Walk) -> str:
    url: str = w.alice.get(f"/api/jobs/{w.job_id}").json()["images"][0]["url"]
    return url


def test_template_errors_have_the_shape(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> None:
    with start_stack(db_url, tmp_path, emulator.url) as stack:
        create_lead(stack, "alice", DEMO_TOKEN)
        create_lead(stack, "carol", "test-token-carol")
        with walking(stack) as w, stack.client("test-token-carol") as carol:
            w.carol = carol
            for name in ("walk-tpl", "retired-tpl", "draft-tpl"):
                assert w.alice.post("/api/templates", json={**TPL, "name": name}).status_code == 201
            image = {**TPL, "name": "image-tpl"}
            image["inputs"] = [
                {
                    "key": "picture",
                    "label": "Picture",
                    "kind": "image",
                    "required": True,
                    "targets": [["1", "image"]],
                    "constraints": {"min_width": 4000},
                }
            ]
            assert w.alice.post("/api/templates", json=image).status_code == 201, "image-tpl"
            for name in ("walk-tpl", "retired-tpl", "image-tpl"):
                assert w.alice.post(f"/api/templates/{name}/publish").status_code == 201, name
            assert w.alice.post("/api/templates/retired-tpl/retire").status_code == 200
            w.upload_id = upload(w.alice, sketch_png(600)).json()["id"]
            errors = check(TEMPLATES, w)
            fields = {d.get("field") for e in errors for d in e["details"]}
            assert {"name", "role"} <= fields, fields


def create_lead(stack: Stack, name: str, token: str) -> None:
    async def make() -> None:
        await ensure_designer(stack.settings, name, token)
        await set_role(stack.settings, name, Role.lead)

    asyncio.run(make())


def test_auth_errors_are_401_with_the_bearer_challenge(walk: Walk) -> None:
    errors = check(AUTH, walk)
    assert "Bearer" in errors[0]["message"]  # says how to authenticate
    assert walk.anon.get("/api/jobs").headers["www-authenticate"] == "Bearer"


def test_a_key_without_the_scope_is_403(walk: Walk) -> None:
    check(SCOPES, walk)


def test_account_errors(walk: Walk) -> None:
    make_account(walk.stack.settings, "alice")
    make_account(walk.stack.settings, "bob", role="admin")  # bob's token now acts as an admin
    check(ACCOUNTS, walk)


def test_project_and_share_link_errors(walk: Walk, monkeypatch: pytest.MonkeyPatch) -> None:
    walk.made["project"] = walk.alice.post("/api/projects", json={"name": "Walk"}).json()["id"]
    link = walk.alice.post("/api/share-links", json={"project_id": walk.made["project"]}).json()
    walk.made["link"] = link["id"]
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    body = {"project_id": walk.made["project"], "expires_at": soon}
    walk.made["expired"] = walk.alice.post("/api/share-links", json=body).json()["url"].rsplit("/", 1)[1]
    time.sleep(1.1)
    monkeypatch.setattr(downloads, "ZIP_MAX_IMAGES", -1)  # the API runs in this process
    check(PROJECTS, walk)


def test_validation_errors_are_422_naming_the_field(walk: Walk) -> None:
    errors = check(VALIDATION, walk)
    fields = {d["field"] for e in errors for d in e["details"]}
    assert {"prompt", "width", "style", "limit", "cursor", "file"} <= fields, fields


def test_unknown_things_are_404_and_unknown_methods_405(walk: Walk) -> None:
    check(NOT_FOUND, walk)
    assert walk.alice.delete("/api/jobs").headers["allow"]


def test_cutout_errors(db_url: str, tmp_path: Path, no_network: Guard) -> None:
    model = write_matte_model(tmp_path / "rembg" / "u2net.onnx")
    with start_stack(db_url, tmp_path, None, rembg_model_path=model) as stack, walking(stack) as w:
        w.upload_id = as_role("product", product_photo(box=(0.45, 0.4, 0.55, 0.6)))(w).json()["id"]
        errors = check(CUTOUT, w)
        assert int(as_role("product", product_photo())(w).headers["retry-after"]) > 0  # the model is gone
    fields = {d.get("field") for e in errors for d in e["details"]}
    assert {"file", "role", "erode_px", "threshold"} <= fields, fields


def test_refused_media_are_415_and_413(db_url: str, tmp_path: Path) -> None:
    with start_stack(db_url, tmp_path, None, upload_max_bytes=UPLOAD_LIMIT) as stack, walking(stack) as w:
        check(MEDIA, w)


def test_limits_are_429_with_retry_after(db_url: str, tmp_path: Path) -> None:
    limits = {"max_active_jobs_per_designer": 1, "max_uploads_per_hour": 2}
    keys = {"api_key_rate_per_minute": 2, "api_key_renders_per_day": 1}
    with start_stack(db_url, tmp_path, None, **limits, **keys) as stack, walking(stack) as w:
        assert upload(w.alice, sketch_png(600)).status_code == 201
        assert upload(w.alice, sketch_png(601)).status_code == 201
        while time.time() % 60 > 50:  # the key's minute must not turn during the walk
            time.sleep(0.5)
        for _ in range(2):
            assert w.anon.get("/api/jobs", headers={"x-api-key": w.read_key}).status_code == 200
        w.alice.post(f"/api/jobs/{w.job_id}/cancel")  # room under the designer's active-job cap
        assert w.anon.post("/api/jobs", json=job_body(), headers={"x-api-key": w.render_key}).is_success
        check(LIMITS, w)
        assert all(int(case[1](w).headers["retry-after"]) > 0 for case in LIMITS)


@pytest.mark.comfyui
def test_conflicts_are_409_and_lost_files_404(
    db_url: str, tmp_path: Path, comfyui_url: str, workload: Workload, submitted_prompts: SubmittedPrompts
) -> None:
    manifest = tmp_path / "manifest" / "styles.toml"  # the manifest without its previews folder
    manifest.parent.mkdir()
    shutil.copyfile(ROOT / "loras" / "styles.toml", manifest)
    with start_stack(db_url, tmp_path, comfyui_url, style_manifest=manifest) as stack:
        with walking(stack, workload.job()) as w:
            submitted_prompts.add(w.job_id)  # a job's id is its prompt id
            used_once = {"Idempotency-Key": "used-once"}
            second = w.alice.post("/api/jobs", json=job_body(**workload.job()), headers=used_once)
            assert second.is_success
            submitted_prompts.add(second.json()["id"])
            stack.drain(2 * workload.render_s)
            assert w.alice.get(f"/api/jobs/{w.job_id}").json()["status"] == "succeeded"
            for png in (stack.settings.data_dir / "images").rglob("*.png"):
                png.unlink()
            check(CONFLICTS, w)


def test_drop_in_renders_that_end_badly_are_errors(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    with start_stack(db_url, tmp_path, emulator.url, dropin_wait_s=0.5) as stack, walking(stack) as w:
        w.alice.post(f"/api/jobs/{w.job_id}/cancel")
        waited = DROP_IN[0][1](w)  # no dispatcher yet: 202, then the job is cancelled
        assert waited.status_code == 202, waited.text
        w.alice.post(f"/api/jobs/{waited.json()['job_id']}/cancel")
        emulator.set_faults(fail_next=1)  # the sampler raises while the next prompt runs
        dispatcher = stack.dispatcher_thread().start()
        try:
            check(DROP_IN, w)
        finally:
            dispatcher.stop()


def test_an_unreachable_database_is_503_with_retry_after(db_url: str, tmp_path: Path) -> None:
    with start_stack(db_url, tmp_path, None, sqlite_busy_timeout_ms=300) as stack, stack.client() as c:
        with database_down(db_url):
            r = c.post("/api/jobs", json=job_body())
        assert_error(r, HANDLED["database_unavailable"], "database_unavailable")
        assert int(r.headers["retry-after"]) >= 1
        assert c.post("/api/jobs", json=job_body()).status_code == 201  # and back at once


@contextlib.contextmanager
def database_down(db_url: str) -> Iterator[None]:
    """SQLite: a writer holds the lock. PostgreSQL: the database refuses connections and loses its own."""
    if db_url.startswith("sqlite"):
        writer = sqlite3.connect(db_url.split(":///", 1)[1], timeout=1)
        writer.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            writer.rollback()
            writer.close()
        return
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def test_the_unexpected_is_500_and_tells_nothing(db_url: str, tmp_path: Path) -> None:
    """A route that raises what nobody expected: the handler answers; no detail of it leaves the API."""
    settings = make_settings(db_url, tmp_path / "data", None)
    app = create_app(settings)

    @app.get("/api/test-only/unexpected")
    async def unexpected() -> None:
        raise RuntimeError("secret internals: /srv/studio password=hunter2")

    server = ApiServer(settings, app=app)
    server.start()
    try:
        r = httpx.get(f"{server.url}/api/test-only/unexpected", timeout=10)
    finally:
        server.stop()
    error = assert_error(r, HANDLED["internal_error"], "internal_error")
    assert "secret" not in r.text and "hunter2" not in r.text and error["details"] == []


def test_every_code_the_routes_raise_is_walked() -> None:
    """Every `raise SomeAppError(...)` of the routes, by its `code=` or its class's own code, is walked."""
    classes = {c.__name__: c.code for c in _subclasses(AppError)}
    raised = set()
    for path in [*(ROOT / "backend" / "api").glob("*.py"), *(ROOT / "backend" / n for n in AUTH_MODULES)]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                raised |= _codes(node.exc, classes)
    tables = (
        AUTH,
        SCOPES,
        VALIDATION,
        NOT_FOUND,
        MEDIA,
        LIMITS,
        CONFLICTS,
        DROP_IN,
        TEMPLATES,
        ACCOUNTS,
        PROJECTS,
        CUTOUT,
    )
    walked = {case[3] for table in tables for case in table}
    assert raised - {"?"} <= walked | set(HANDLED), sorted(raised - walked - set(HANDLED))
    assert len(raised) > 15  # the scan found the routes' errors


def _codes(call: ast.Call, classes: dict[str, str]) -> set[str]:
    """The code a `raise Class(..., code=...)` answers with ("?" when it is computed: walked by value)."""
    name = call.func.id if isinstance(call.func, ast.Name) else ""
    if name not in classes and name != "cls":
        return set()
    for kw in call.keywords:
        if kw.arg == "code":
            return {str(kw.value.value)} if isinstance(kw.value, ast.Constant) else {"?"}
    return {classes[name]} if name in classes else {"?"}


def _subclasses(cls: type[AppError]) -> list[type[AppError]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]
