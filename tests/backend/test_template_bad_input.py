"""Hostile and mistaken template input through the API, on SQLite and PostgreSQL: a UI-format workflow
(told how to export the API format), bodies nested 10,000 deep, markup in labels and descriptions (kept as
plain text), unknown keys, values outside narrowed constraints. Each is a clean 4xx in the error shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.models import Role
from backend.users import set_role
from tests.backend.test_templates import declaration, lead
from tests.support.api import assert_error
from tests.support.backend import Stack, start_stack
from tests.support.comfy import EmulatorProcess

EXPORT_HELP = "Workflow menu → Export (API)"


@pytest.fixture
def tstack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, emulator.url) as stack:
        asyncio.run(set_role(stack.settings, "alice", Role.lead))
        yield stack


def ui_workflow() -> dict[str, Any]:
    """What ComfyUI's Workflow → Save writes (the UI format): nodes with widgets_values, a links table."""
    return {
        "last_node_id": 2,
        "last_link_id": 1,
        "nodes": [
            {
                "id": 1,
                "type": "CheckpointLoaderSimple",
                "pos": [0, 0],
                "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0}],
                "widgets_values": ["interiordesignsuperm_v2.safetensors"],
            },
            {
                "id": 2,
                "type": "SaveImage",
                "pos": [400, 0],
                "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
                "widgets_values": ["ComfyUI"],
            },
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


@pytest.mark.parametrize("path", ["/api/templates", "/api/templates/validate"])
def test_a_ui_format_graph_is_422_saying_how_to_export_the_api_format(tstack: Stack, path: str) -> None:
    with lead(tstack) as alice:
        r = alice.post(path, json=declaration("ui-graph", graph=ui_workflow()))
        error = assert_error(r, 422, "template_invalid")
        assert EXPORT_HELP in error["message"]
        [problem] = error["details"]
        assert problem["code"] == "ui_format" and EXPORT_HELP in problem["message"]
        # the whole body a UI workflow (no declaration around it): told the same
        error = assert_error(alice.post(path, json=ui_workflow()), 422, "template_invalid")
        assert EXPORT_HELP in error["message"]
        assert [p["code"] for p in error["details"]] == ["ui_format"]
        stored = alice.get("/api/templates/ui-graph").status_code  # a draft, for its owner to read back
        assert stored == (200 if path == "/api/templates" else 404)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/templates"),
        ("POST", "/api/templates/validate"),
        ("PUT", "/api/templates/plain-room/draft"),
        ("POST", "/api/jobs"),
    ],
)
def test_a_body_nested_10000_deep_is_a_clean_4xx(tstack: Stack, method: str, path: str) -> None:
    bodies = [
        body
        for depth in (500, 10_000)  # Python's parser reads the first, and recurses too deep on the second
        for body in (
            _nested(depth),  # the whole body
            json.dumps(declaration())[:-1] + ', "extra": ' + _nested(depth) + "}",  # deep inside
            '{"template": "text", "inputs": {"prompt": ' + _nested(depth) + "}}",
        )
    ]
    with lead(tstack) as alice:
        assert alice.post("/api/templates", json=declaration()).status_code == 201  # its draft is PUT
        for body in bodies:
            r = alice.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
            error = r.json()["error"]  # the error shape (FastAPI's parser gives up: 400 bad_request)
            assert error["code"] in ("bad_request", "invalid_input", "template_invalid"), error
            assert error["message"]
        assert alice.get("/api/templates").status_code == 200  # the worker lives on


def test_markup_in_labels_help_and_description_comes_back_as_the_same_text(tstack: Stack) -> None:
    doc = declaration(description="<img src=x onerror=alert(1)> & <i>more</i>")
    doc["inputs"][0]["label"] = "<script>alert('label')</script>"
    doc["inputs"][0]["help"] = "<a href='javascript:alert(1)'>help</a>"
    with lead(tstack) as alice:
        assert alice.post("/api/templates", json=doc).status_code == 201
        assert alice.post("/api/templates/plain-room/publish").status_code == 201
        r = alice.get("/api/templates/plain-room")
        assert r.headers["content-type"] == "application/json"
        shown = r.json()
        assert shown["description"] == doc["description"]
        prompt = next(i for i in shown["inputs"] if i["key"] == "prompt")
        assert (prompt["label"], prompt["help"]) == (doc["inputs"][0]["label"], doc["inputs"][0]["help"])
        # a name is a URL-safe slug: markup there is refused, naming the field
        r = alice.post("/api/templates", json=declaration(name="<b>room</b>"))
        assert [d["field"] for d in assert_error(r, 422, "template_invalid")["details"]] == ["name"]
        r = alice.post("/api/templates/validate", json=declaration(title="line\u0000break"))
        assert [d["field"] for d in assert_error(r, 422, "template_invalid")["details"]] == ["title"]


def test_unknown_keys_in_a_declaration_are_422_with_their_paths(tstack: Stack) -> None:
    doc = declaration(colour="blue")
    doc["inputs"][1]["constraints"]["maximum"] = 3
    with lead(tstack) as alice:
        error = assert_error(alice.post("/api/templates", json=doc), 422, "template_invalid")
        assert {d["field"] for d in error["details"]} == {"colour", "inputs.1.constraints.maximum"}
        doc = declaration()
        doc["inputs"][0]["targets"] = [["6", "no_such_input"]]
        problems = assert_error(alice.post("/api/templates", json=doc), 422, "template_invalid")["details"]
        assert any(p.get("field", "").startswith("inputs.0") for p in problems), problems


def _published(alice: httpx.Client, doc: dict[str, Any]) -> None:
    assert alice.post("/api/templates", json=doc).status_code == 201
    assert alice.post(f"/api/templates/{doc['name']}/publish").status_code == 201


def test_job_values_outside_the_narrowed_constraints_are_422_on_their_fields(tstack: Stack) -> None:
    doc = declaration()
    doc["inputs"][0]["constraints"] = {"max_length": 20}
    doc["inputs"].append(
        {
            "key": "sampler",
            "label": "Sampler",
            "kind": "choice",
            "targets": [["3", "sampler_name"]],
            "default": "euler",
            "constraints": {"choices": ["euler", "dpmpp_2m"]},
        }
    )
    with lead(tstack) as alice:
        _published(alice, doc)
        cases = {
            "prompt": "x" * 21,
            "steps": 0,  # narrowed to 1..10 (the spec allows up to 10000)
            "sampler": "ddim",  # in the spec's list, not in the narrowed one
            "seed": -1,
        }
        for key, value in cases.items():
            inputs = {"prompt": "a hall", key: value}
            r = alice.post("/api/jobs", json={"template": "plain-room", "inputs": inputs})
            details = assert_error(r, 422, "invalid_input")["details"]
            assert [d["field"] for d in details] == [f"inputs.{key}"], (key, details)
        r = alice.post("/api/jobs", json={"template": "plain-room", "inputs": {"steps": 3}})
        assert [d["field"] for d in assert_error(r, 422, "invalid_input")["details"]] == ["inputs.prompt"]
        r = alice.post("/api/jobs", json={"template": "plain-room", "inputs": {}, "colour": "blue"})
        assert_error(r, 422, "invalid_input")
