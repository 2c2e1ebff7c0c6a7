"""A custom template for the studio's tests: the text graph with a draft pass, five declared inputs of
different kinds, published by a lead through the API."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from backend.models import Role
from backend.users import set_role
from tests.support.backend import Stack

WORKFLOWS = Path(__file__).resolve().parents[2] / "contract" / "workflows"
NAME = "quick-draft"


def graph() -> dict[str, Any]:
    """txt2img with a second SaveImage (node 20) that keeps the decoded image as a labelled pass."""
    g: dict[str, Any] = json.loads((WORKFLOWS / "txt2img.json").read_text())
    g["20"] = {
        "class_type": "SaveImage",
        "_meta": {"title": "Draft pass"},
        "inputs": {"images": ["8", 0], "filename_prefix": "renders/pass"},
    }
    return g


def declaration(name: str = NAME, title: str = "Quick room draft", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "title": title,
        "description": "A fast first look at a room, with its draft pass beside the render.",
        "graph": graph(),
        "inputs": [
            {
                "key": "prompt",
                "label": "Describe the room",
                "help": "Materials, light and furniture",
                "kind": "long_text",
                "targets": [["6", "text"]],
                "default": "sunlit reading corner, rattan armchair, linen curtains, teak floor",
                "constraints": {"max_length": 400},
            },
            {
                "key": "style",
                "label": "Style",
                "kind": "style",
                "default": "indochine",
                "style": {"lora_node": "10", "positive": ["6", "text"], "negative": ["7", "text"]},
            },
            {
                "key": "steps",
                "label": "Steps",
                "help": "More steps: finer detail, slower",
                "kind": "integer",
                "targets": [["3", "steps"]],
                "default": 6,
                "constraints": {"min": 2, "max": 30},
            },
            {
                "key": "sampler",
                "label": "Sampler",
                "kind": "choice",
                "targets": [["3", "sampler_name"]],
                "default": "euler",
                "constraints": {"choices": ["euler", "dpmpp_2m"]},
            },
            {
                "key": "seed",
                "label": "Seed",
                "kind": "seed",
                "targets": [["3", "seed"]],
                "required": False,
            },
        ],
        "outputs": {"results": ["9"], "passes": [{"node": "20", "label": "Draft pass"}]},
    }
    doc.update(overrides)
    return copy.deepcopy(doc)


def make_lead(stack: Stack, name: str = "alice") -> None:
    asyncio.run(set_role(stack.settings, name, Role.lead))


def publish(stack: Stack, doc: dict[str, Any], token: str) -> dict[str, Any]:
    """Create the draft and publish it as `token`'s designer (a lead); the publication."""
    with stack.client(token) as c:
        r = c.post("/api/templates", json=doc)
        assert r.status_code == 201, r.text
        r = c.post(f"/api/templates/{doc['name']}/publish")
        assert r.status_code in (200, 201), r.text
        publication: dict[str, Any] = r.json()
        return publication


def sketch_declaration(name: str = "plan-to-room", **constraints: Any) -> dict[str, Any]:
    """The built-in sketch template under another name, its sketch input at least `constraints` big."""
    doc: dict[str, Any] = json.loads((WORKFLOWS / "sketch.template.json").read_text())
    doc.pop("workflow")
    doc["graph"] = json.loads((WORKFLOWS / "sketch2img.json").read_text())
    doc.update(
        name=name, title="Plan to room", description="A room from a floor plan or a perspective sketch."
    )
    image = next(i for i in doc["inputs"] if i["kind"] == "image")
    image["label"] = "Your sketch"
    image["constraints"] = dict(constraints)
    return doc
