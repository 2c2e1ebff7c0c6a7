"""Templates through the API on SQLite and PostgreSQL, with the emulator over loopback: validation
failures with their exact messages, publishing, versions, rollback, retirement, roles, and template jobs
stored with their filled graph and lane."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from backend.models import Role
from backend.users import set_role
from tests.factories import job_body
from tests.support.api import assert_error
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, Stack, start_stack
from tests.support.comfy import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "contract" / "workflows"


def declaration(name: str = "plain-room", **overrides: Any) -> dict[str, Any]:
    """A custom template: the text graph with a prompt, steps and a seed."""
    graph = json.loads((WORKFLOWS / "txt2img.json").read_text())
    del graph["10"]
    for node in graph.values():
        node.pop("_meta", None)
        for key, value in node["inputs"].items():
            if value == ["10", 0]:
                node["inputs"][key] = ["4", 0]
            elif value == ["10", 1]:
                node["inputs"][key] = ["4", 1]
    doc: dict[str, Any] = {
        "name": name,
        "title": "A plain room",
        "description": "text to image without a style",
        "graph": graph,
        "inputs": [
            {
                "key": "prompt",
                "label": "Room",
                "kind": "long_text",
                "targets": [["6", "text"]],
                "required": True,
            },
            {
                "key": "steps",
                "label": "Steps",
                "kind": "integer",
                "targets": [["3", "steps"]],
                "default": 4,
                "constraints": {"min": 1, "max": 10},
            },
            {"key": "seed", "label": "Seed", "kind": "seed", "targets": [["3", "seed"]]},
        ],
        "outputs": {"results": ["9"]},
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def tstack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, emulator.url) as stack:
        asyncio.run(set_role(stack.settings, "alice", Role.lead))
        yield stack


def lead(stack: Stack) -> httpx.Client:
    return stack.client(DEMO_TOKEN)


def test_a_valid_template_is_drafted_published_and_listed(tstack: Stack) -> None:
    with lead(tstack) as alice, tstack.client(OTHER_TOKEN) as bob:
        r = alice.post("/api/templates", json=declaration())
        assert r.status_code == 201, r.text
        report = r.json()["report"]
        assert report["ok"] and report["lane"].startswith("n:"), report
        assert [v["covers"] for v in report["instances"]] == [True]
        assert report["dry_run"]["status"] == "skipped"
        assert {w["code"] for w in report["warnings"]} == {"dry_run_skipped"}
        # a draft: its owner sees it, nobody else does
        assert "plain-room" in [t["name"] for t in alice.get("/api/templates").json()["items"]]
        assert "plain-room" not in [t["name"] for t in bob.get("/api/templates").json()["items"]]
        assert_error(bob.get("/api/templates/plain-room"), 404, "template_not_found")
        r = alice.post("/api/templates/plain-room/publish")
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1 and r.json()["created"]
        shown = bob.get("/api/templates/plain-room").json()
        assert shown["current_version"] == 1 and shown["draft"] is None
        assert {i["key"] for i in shown["inputs"]} == {"prompt", "steps", "seed"}
        steps = next(i for i in shown["inputs"] if i["key"] == "steps")
        assert steps["constraints"]["max"] == 10
        names = [t["name"] for t in bob.get("/api/templates").json()["items"]]
        assert {"edit", "product", "restyle", "sketch", "stage", "text", "plain-room"} <= set(names)


def test_versions_identical_content_rollback_and_retire(tstack: Stack) -> None:
    with lead(tstack) as alice, tstack.client(OTHER_TOKEN) as bob:
        assert alice.post("/api/templates", json=declaration()).status_code == 201
        assert alice.post("/api/templates/plain-room/publish").status_code == 201
        changed = declaration()
        changed["inputs"][1]["constraints"]["max"] = 8
        assert alice.put("/api/templates/plain-room/draft", json=changed).status_code == 200
        r = alice.post("/api/templates/plain-room/publish")
        assert (r.status_code, r.json()["version"]) == (201, 2)
        assert alice.put("/api/templates/plain-room/draft", json=changed).status_code == 200
        r = alice.post("/api/templates/plain-room/publish")
        assert (r.status_code, r.json()["version"], r.json()["created"]) == (200, 2, False)
        r = alice.post("/api/templates/plain-room/rollback", json={"version": 1})
        assert r.json()["current_version"] == 1
        assert_error(
            alice.post("/api/templates/plain-room/rollback", json={"version": 9}),
            404,
            "template_version_not_found",
        )
        versions = bob.get("/api/templates/plain-room").json()["versions"]
        assert [(v["version"], v["current"]) for v in versions] == [(1, True), (2, False)]
        assert bob.get("/api/templates/plain-room/versions/2").json()["graph"] is None  # leads only
        assert (
            alice.get("/api/templates/plain-room/versions/2").json()["graph"]["3"]["class_type"] == "KSampler"
        )
        job = bob.post("/api/jobs", json={"template": "plain-room", "inputs": {"prompt": "a hall"}}).json()
        assert job["template"] == {"name": "plain-room", "version": 1}
        assert alice.post("/api/templates/plain-room/retire").json()["retired"]
        r = bob.post("/api/jobs", json={"template": "plain-room", "inputs": {"prompt": "a hall"}})
        assert_error(r, 409, "template_retired")
        assert "plain-room" not in [t["name"] for t in bob.get("/api/templates").json()["items"]]
        listed = bob.get("/api/templates", params={"include_retired": True}).json()["items"]
        assert "plain-room" in [t["name"] for t in listed]
        # an old job is still reproducible: render again pins its version
        again = bob.post(f"/api/jobs/{job['id']}/retry")
        assert again.status_code == 201 and again.json()["template"] == {"name": "plain-room", "version": 1}
        assert alice.post("/api/templates/plain-room/restore").json()["retired"] is False


def test_roles_a_designer_is_403_another_leads_draft_404(tstack: Stack) -> None:
    with lead(tstack) as alice, tstack.client(OTHER_TOKEN) as bob:
        assert_error(bob.post("/api/templates", json=declaration()), 403, "forbidden_role")
        assert_error(bob.post("/api/templates/validate", json=declaration()), 403, "forbidden_role")
        assert alice.post("/api/templates", json=declaration()).status_code == 201
        asyncio.run(set_role(tstack.settings, "bob", Role.lead))
        wait_for_role(bob, "lead")
        assert_error(bob.post("/api/templates/plain-room/publish"), 404, "template_not_found")
        assert_error(
            bob.put("/api/templates/plain-room/draft", json=declaration()), 404, "template_not_found"
        )
        assert_error(
            alice.put("/api/templates/text/draft", json=declaration("text")), 409, "template_builtin"
        )


def wait_for_role(client: httpx.Client, role: str, timeout_s: float = 10.0) -> None:
    """A role set from the command line reaches the API processes by a notice (NOTIFY or a datagram),
    a moment after the command returns: wait until the API answers with it."""
    deadline = time.monotonic() + timeout_s
    while client.get("/api/me").json().get("role") != role:
        assert time.monotonic() < deadline, f"the API never saw the role {role!r}"
        time.sleep(0.05)


def _problems(r: httpx.Response) -> list[dict[str, Any]]:
    error = assert_error(r, 422, "template_invalid")
    return list(error["details"])


def test_each_validation_failure_names_node_class_input_and_instance(tstack: Stack) -> None:
    instance = tstack.settings.comfy_instances[0].name
    with lead(tstack) as alice:
        unknown = declaration("unknown-class")
        unknown["graph"]["20"] = {"class_type": "NoSuchNode", "inputs": {"image": ["8", 0]}}
        [found] = [
            p for p in _problems(alice.post("/api/templates", json=unknown)) if p["code"] == "unknown_class"
        ]
        assert found["message"] == f"node 20 (NoSuchNode): class NoSuchNode is not installed (on {instance})"
        assert (found["node_id"], found["class_type"], found["instance"]) == ("20", "NoSuchNode", instance)
        # kept as a draft with its report, for its owner to read back
        assert alice.get("/api/templates/unknown-class").json()["draft_report"]["ok"] is False

        literal = declaration("bad-literal")
        literal["graph"]["3"]["inputs"]["cfg"] = 500.0
        problems = _problems(alice.post("/api/templates", json=literal))
        found = next(p for p in problems if p.get("node_id") == "3")
        assert found["field"] == "graph.3.inputs.cfg" and found["input"] == "cfg"
        assert found["message"].startswith("node 3 (KSampler), input cfg: ")

        missing = declaration("missing-model")
        missing["graph"]["4"]["inputs"]["ckpt_name"] = "nowhere.safetensors"
        problems = _problems(alice.post("/api/templates", json=missing))
        manifest = next(p for p in problems if p["code"] == "model_not_in_manifest")
        assert manifest["message"] == (
            "node 4 (CheckpointLoaderSimple), input ckpt_name: checkpoints/nowhere.safetensors is not in the "
            "model manifest (add it, with its sha256, first)"
        )
        assert any(p["code"] == "no_instance_covers" for p in problems)

        cycle = declaration("a-cycle")
        cycle["graph"]["5"]["inputs"]["width"] = ["3", 0]
        assert any("cycle" in p["code"] for p in _problems(alice.post("/api/templates", json=cycle)))

        dangling = declaration("dangling")
        dangling["graph"]["8"]["inputs"]["samples"] = ["99", 0]
        problems = _problems(alice.post("/api/templates", json=dangling))
        assert any(p.get("node_id") == "8" and "99" in p["message"] for p in problems), problems

        wider = declaration("wider")
        wider["inputs"][1]["constraints"]["max"] = 100_000
        problems = _problems(alice.post("/api/templates", json=wider))
        assert any(p.get("field", "").startswith("inputs.1") for p in problems), problems


def test_malformed_declarations_are_422_with_field_paths(tstack: Stack) -> None:
    with lead(tstack) as alice:
        r = alice.post("/api/templates", json=declaration(name="Not A Name"))
        [problem] = assert_error(r, 422, "template_invalid")["details"]
        assert problem["field"] == "name"
        deep: Any = "x"
        for _ in range(200):
            deep = [deep]
        r = alice.post("/api/templates", json=declaration(description=deep))
        assert "deeper" in assert_error(r, 422, "template_invalid")["message"]
        huge = declaration("huge")
        for i in range(1001):
            huge["graph"][str(1000 + i)] = {"class_type": "VAEDecode", "inputs": {}}
        assert (
            "at most 1000 nodes"
            in assert_error(alice.post("/api/templates", json=huge), 422, "template_invalid")["message"]
        )
        blob = declaration("blob")
        blob["graph"]["6"]["inputs"]["text"] = "a" * (3 * 1024 * 1024)
        assert_error(alice.post("/api/templates", json=blob), 413, "too_large")


def test_a_title_with_markup_comes_back_as_the_same_plain_text(tstack: Stack) -> None:
    title = "<b>Loft</b> & <script>alert(1)</script>"
    with lead(tstack) as alice:
        assert alice.post("/api/templates", json=declaration(title=title)).status_code == 201
        r = alice.get("/api/templates/plain-room")
        assert r.json()["title"] == title and r.headers["content-type"] == "application/json"


def test_template_jobs_validate_inputs_and_store_the_filled_graph(tstack: Stack) -> None:
    with lead(tstack) as alice:
        alice.post("/api/templates", json=declaration())
        alice.post("/api/templates/plain-room/publish")
        r = alice.post(
            "/api/jobs", json={"template": "plain-room", "inputs": {"prompt": "a hall", "bogus": 1}}
        )
        fields = {d["field"] for d in assert_error(r, 422, "invalid_input")["details"]}
        assert fields == {"inputs.bogus"}
        r = alice.post(
            "/api/jobs", json={"template": "plain-room", "inputs": {"prompt": "a hall", "steps": 11}}
        )
        assert {d["field"] for d in assert_error(r, 422, "invalid_input")["details"]} == {"inputs.steps"}
        assert_error(
            alice.post("/api/jobs", json={"template": "nothing-here", "inputs": {}}),
            404,
            "template_not_found",
        )
        r = alice.post(
            "/api/jobs", json={"template": "plain-room", "inputs": {"prompt": "a hall", "steps": 3}}
        )
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["kind"] == "plain-room" and job["template"] == {"name": "plain-room", "version": 1}
        assert job["params"]["steps"] == 3 and job["params"]["seed"] == job["seed"]
        assert job["passes"] == []
    graph, lane = _stored(tstack, job["id"])
    assert graph["3"]["inputs"]["steps"] == 3 and graph["3"]["inputs"]["seed"] == job["seed"]
    assert graph["6"]["inputs"]["text"] == "a hall"
    assert graph["9"]["inputs"]["filename_prefix"] == f"studio/{job['id']}"
    assert lane.startswith("n:")


def test_legacy_jobs_run_the_builtins_and_still_render(tstack: Stack) -> None:
    with lead(tstack) as alice:
        job = alice.post("/api/jobs", json=job_body()).json()
        assert job["template"] == {"name": "text", "version": 1} and job["kind"] == "text"
        graph, lane = _stored(tstack, job["id"])
        assert lane == "text" and graph["3"]["inputs"]["seed"] == job["seed"]
        tstack.drain()
        assert alice.get(f"/api/jobs/{job['id']}").json()["status"] == "succeeded"


def test_a_template_job_renders_and_render_again_pins_its_version(tstack: Stack) -> None:
    with lead(tstack) as alice:
        alice.post("/api/templates", json=declaration())
        alice.post("/api/templates/plain-room/publish")
        job = alice.post("/api/jobs", json={"template": "plain-room", "inputs": {"prompt": "a hall"}}).json()
        changed = copy.deepcopy(declaration())
        changed["inputs"][1]["default"] = 6
        alice.put("/api/templates/plain-room/draft", json=changed)
        assert alice.post("/api/templates/plain-room/publish").json()["version"] == 2
        again = alice.post(f"/api/jobs/{job['id']}/retry").json()
        assert again["template"]["version"] == 1
        first, _ = _stored(tstack, job["id"])
        second, _ = _stored(tstack, again["id"])
        assert _without_prefix(first) == _without_prefix(second)
        tstack.drain()
        done = [alice.get(f"/api/jobs/{j}").json() for j in (job["id"], again["id"])]
        assert [j["status"] for j in done] == ["succeeded", "succeeded"]
        # The same pixels (each PNG's metadata names its own job, so the files differ).
        pngs = [alice.get(f"/api/images/{j['images'][0]['id']}").content for j in done]
        pixels = [PILImage.open(io.BytesIO(png)).tobytes() for png in pngs]
        assert pixels[0] == pixels[1]


def _without_prefix(graph: dict[str, Any]) -> dict[str, Any]:
    graph = copy.deepcopy(graph)
    graph["9"]["inputs"].pop("filename_prefix")
    return graph


def _stored(stack: Stack, job_id: str) -> tuple[dict[str, Any], str]:
    from sqlalchemy import create_engine, text

    url = stack.settings.database_url.replace("+aiosqlite", "").replace("+psycopg", "+psycopg")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT graph, lane FROM jobs WHERE id = :id"), {"id": job_id}).one()
    finally:
        engine.dispose()
    graph = row.graph if isinstance(row.graph, dict) else json.loads(row.graph)
    return graph, row.lane
