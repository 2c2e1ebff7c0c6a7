"""The render request: the stored graph sent exactly, its images content-named where the graph loads them,
a job queued before templates built as then; which outputs a job keeps; what progress counts."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from sqlalchemy import select

from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.job_context import JobGateway, RenderOutput, _kept
from backend.models import Designer, Job, new_id
from backend.render_request import InputImage, Outputs, RenderRequest, render_meta, sampling_steps
from backend.storage import make_storage
from contract.styles import load_manifest
from tests.factories import job_body, sketch_png
from tests.support.backend import Stack
from tests.support.templates import insert_template_job, read_job, template_graph


def test_progress_counts_every_sampling_node_by_its_steps_literal() -> None:
    graph = template_graph("c.safetensors", first_steps=5, second_steps=7)
    graph["40"] = {"class_type": "Custom", "inputs": {"steps": ["3", 0]}}  # a link, not a literal
    assert sampling_steps(graph) == {"3": 5, "23": 7}


def test_a_job_keeps_its_results_then_its_labelled_passes() -> None:
    spec = Outputs.of_spec({"outputs": {"results": ["9"], "passes": [{"node": "20", "label": "Draft"}]}})
    outs = [RenderOutput(b"p", 0, "20"), RenderOutput(b"x", 0, "99"), RenderOutput(b"r1", 1, "9"),
            RenderOutput(b"r0", 0, "9")]  # fmt: skip
    kept = _kept(outs, spec)
    assert [(o.png, o.index, o.node_id, label) for o, label in kept] == [
        (b"r0", 0, "9", None),
        (b"r1", 1, "9", None),
        (b"p", 2, "20", "Draft"),
    ]
    assert Outputs.of_spec(None) == Outputs(("9",), ())  # before templates: node "9"
    assert [label for _, label in _kept([RenderOutput(b"a", 0)], spec)] == [
        None
    ]  # an adapter without node ids


def _gateway_request(stack: Stack, job_id: str) -> tuple[RenderRequest, list[str]]:
    placed: list[str] = []
    job = read_job(stack.settings, job_id)

    async def place(image: InputImage) -> str:
        placed.append(image.path)
        return image.path

    async def run() -> RenderRequest:
        engine = make_engine(stack.settings)
        try:
            manifest = load_manifest(stack.settings.style_manifest)
            gateway = JobGateway(
                stack.settings, make_sessionmaker(engine), make_storage(stack.settings), manifest, "w"
            )
            return await gateway.render_request(job, place)
        finally:
            await engine.dispose()

    return asyncio.run(run()), placed


def test_a_template_job_sends_its_stored_graph_and_places_its_images(api_stack: Stack) -> None:
    with api_stack.client() as c:
        up = c.post("/api/uploads", files={"file": ("room.png", sketch_png(), "image/png")}).json()
    job = insert_template_job(api_stack.settings, up["id"])
    request, placed = _gateway_request(api_stack, job.job_id)
    assert request.graph == job.graph
    assert placed == [job.graph["30"]["inputs"]["image"]] and placed[0].startswith("uploads/")
    payload: dict[str, Any] = request.payload()
    assert [f"{i['subfolder']}/{i['filename']}" for i in payload["images"]] == placed
    assert "sketch" not in payload and request.outputs.label("20") == "Draft"


def test_a_sketch_job_queued_before_templates_is_built_as_then(api_stack: Stack) -> None:
    with api_stack.client() as c:
        up = c.post("/api/uploads", files={"file": ("room.png", sketch_png(), "image/png")}).json()

    async def insert() -> str:
        engine = make_engine(api_stack.settings)
        try:
            async with make_sessionmaker(engine)() as s, s.begin():
                alice = (await s.scalars(select(Designer).where(Designer.name == "alice"))).one()
                job_id = new_id()
                params = job_body(kind="sketch", style="minimalist", sketch_strength=1.0, num_images=1,
                                  cfg=7.0, sampler="euler", scheduler="normal")  # fmt: skip
                s.add(Job(id=job_id, designer_id=alice.id, kind="sketch", style="minimalist", params=params,
                          params_hash=hashlib.sha256(job_id.encode()).hexdigest(), seed=5,
                          upload_id=up["id"]))  # fmt: skip
                return job_id
        finally:
            await engine.dispose()

    job_id = asyncio.run(insert())
    request, placed = _gateway_request(api_stack, job_id)
    assert len(placed) == 1 and placed[0].startswith("sketches/")
    assert request.graph["11"]["inputs"]["image"] == placed[0]
    assert read_job(api_stack.settings, job_id).graph is None


def test_render_meta_names_the_models_the_sent_graph_loads() -> None:
    """A custom template's render says its own checkpoint and ControlNets, not the deployment's."""
    graph = template_graph("custom-ckpt.safetensors", first_steps=2, second_steps=2)
    graph["50"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "depth.safetensors"}}
    manifest = load_manifest(None)
    job = Job(id=new_id(), designer_id="d", kind="two-pass", style="none", params={}, params_hash="h", seed=3)
    job.graph = graph
    meta = render_meta(job, Settings(), manifest)
    assert meta["checkpoint"] == "custom-ckpt.safetensors" and meta["controlnet"] == "depth.safetensors"
    assert meta["models"]["checkpoints"] == ["custom-ckpt.safetensors"]
    legacy = Job(id=new_id(), designer_id="d", kind="text", style="none", params={}, params_hash="h", seed=3)
    assert render_meta(legacy, Settings(), manifest)["checkpoint"] == Settings().checkpoint_name
