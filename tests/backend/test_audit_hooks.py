"""The audit lines the template and model routes write, read back by an admin, on SQLite and PostgreSQL:
a publish (a new version, and the same content again), a rollback, a retirement, a restoration and a
model added by key each leave exactly one line with who, what and the version or file; a refused change
leaves none (the line is written in the change's own transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.test_api_models import ADMIN_TOKEN, BUCKET, Models, _roles, models, safetensors
from tests.backend.test_templates import declaration
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, Stack, start_stack
from tests.support.comfy import EmulatorProcess

__all__ = ["models"]  # the fixture, imported
TEMPLATE_ACTIONS = ("template_published", "template_rolled_back", "template_retired", "template_restored")


@pytest.fixture
def tstack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    """Alice a lead, Carol an admin."""
    with start_stack(db_url, tmp_path, emulator.url) as stack:
        asyncio.run(_roles(stack))
        yield stack


def lines(admin: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    """The audit log's lines, oldest first."""
    r = admin.get("/api/admin/audit", params={"limit": 1000, **filters})
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["items"]))


def template_lines(admin: httpx.Client) -> list[tuple[str, str, str, dict[str, Any]]]:
    found = [e for e in lines(admin) if e["action"] in TEMPLATE_ACTIONS]
    return [(e["action"], e["actor_name"], e["target_id"], e["details"]) for e in found]


def test_publish_rollback_retire_and_restore_each_write_one_audit_line(tstack: Stack) -> None:
    with (
        tstack.client(DEMO_TOKEN) as alice,
        tstack.client(OTHER_TOKEN) as bob,
        tstack.client(ADMIN_TOKEN) as carol,
    ):
        assert alice.post("/api/templates", json=declaration()).status_code == 201
        assert alice.post("/api/templates/plain-room/publish").status_code == 201
        changed = declaration()
        changed["inputs"][1]["constraints"]["max"] = 8
        assert alice.put("/api/templates/plain-room/draft", json=changed).status_code == 200
        assert alice.post("/api/templates/plain-room/publish").status_code == 201
        assert alice.put("/api/templates/plain-room/draft", json=changed).status_code == 200
        assert alice.post("/api/templates/plain-room/publish").status_code == 200  # the same content
        assert alice.post("/api/templates/plain-room/rollback", json={"version": 1}).status_code == 200
        r = alice.post("/api/templates/plain-room/rollback", json={"version": 9})
        assert r.status_code == 404  # refused: no line
        assert bob.post("/api/templates/plain-room/retire").status_code == 403  # a designer: no line
        assert alice.post("/api/templates/plain-room/retire").status_code == 200
        assert alice.post("/api/templates/plain-room/retire").status_code == 200  # already retired
        assert alice.post("/api/templates/plain-room/restore").status_code == 200
        assert alice.post("/api/templates/plain-room/restore").status_code == 200  # not retired

        assert template_lines(carol) == [
            ("template_published", "alice", "plain-room", {"version": 1, "new_version": True}),
            ("template_published", "alice", "plain-room", {"version": 2, "new_version": True}),
            ("template_published", "alice", "plain-room", {"version": 2, "new_version": False}),
            ("template_rolled_back", "alice", "plain-room", {"from": 2, "to": 1}),
            ("template_retired", "alice", "plain-room", {}),
            ("template_restored", "alice", "plain-room", {}),
        ]
        published = lines(carol, action="template_published")
        assert {e["target_type"] for e in published} == {"template"}
        assert all(e["ip"] == "127.0.0.1" for e in published)


def test_a_model_added_writes_one_audit_line_and_the_same_file_again_none(models: Models) -> None:
    data = safetensors(bytes(4096), dtype="F16", shape=[2048])
    key = "models/upscale_models/2x.safetensors"
    models.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    body = {"folder": "upscale_models", "file": "2x.safetensors", "s3_key": key, "licence": "mit"}
    with models.stack.client(DEMO_TOKEN) as alice, models.stack.client(ADMIN_TOKEN) as carol:
        assert alice.post("/api/models", json=body).status_code == 201
        assert alice.post("/api/models", json=body).status_code == 200  # already pinned
        r = alice.post("/api/models", json={**body, "file": "gone.safetensors", "s3_key": "models/x/no"})
        assert r.status_code == 422  # refused: no line
        r = alice.post(
            "/api/models/upload",
            params={"folder": "loras", "file": "brass.safetensors", "licence": "apache-2.0"},
            content=safetensors(bytes(range(256)) * 4),
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        added = lines(carol, action="model_added")
    assert [(e["actor_name"], e["target_type"], e["target_id"]) for e in added] == [
        ("alice", "model", "upscale_models/2x.safetensors"),
        ("alice", "model", "loras/brass.safetensors"),
    ]
    first = added[0]["details"]
    assert (first["size_bytes"], first["licence"], first["format"]) == (len(data), "mit", "safetensors")
    assert len(first["sha256"]) == 64
