"""A custom template job put straight into the database, as `POST /api/jobs {"template": ...}` stores one:
a published version (spec, needs, lane) and a job carrying the filled graph, for the dispatch tests.

The graph: a first sampler's render saved as a labelled pass ("20"); the job's image input (an upload,
`uploads/<sha256>.png`) scaled by a node pack's class (`ImageScaleByPack`, from the recorded
`tests/data/object_info/studio-pack.json`), encoded and sampled again into the result ("9").
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backend import notify
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.models import Designer, Job, Template, TemplateVersion, Upload, new_id

ROOT = Path(__file__).resolve().parents[2]
STUDIO_PACK = ROOT / "tests" / "data" / "object_info" / "studio-pack.json"
PACK_CLASS = "ImageScaleByPack"
FIRST_STEPS, SECOND_STEPS = 3, 4


def template_graph(checkpoint: str, *, first_steps: int = FIRST_STEPS, second_steps: int = SECOND_STEPS,
                   side: int = 256) -> dict[str, Any]:  # fmt: skip
    """The declaration's graph: two samplers, a pass and a result, an image input, a pack's class."""
    clip, model, vae = ["4", 1], ["4", 0], ["4", 2]
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a calm living room", "clip": clip}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "clutter", "clip": clip}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": side, "height": side, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": _sampler(model, ["5", 0], 11, first_steps, 1.0)},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": vae}},
        "20": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "draft"}},
        "30": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "21": {
            "class_type": PACK_CLASS,
            "inputs": {"image": ["30", 0], "upscale_method": "bilinear", "scale_by": 0.5},
        },
        "22": {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": vae}},
        "23": {"class_type": "KSampler", "inputs": _sampler(model, ["22", 0], 12, second_steps, 0.6)},
        "24": {"class_type": "VAEDecode", "inputs": {"samples": ["23", 0], "vae": vae}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["24", 0], "filename_prefix": "result"}},
    }


def _sampler(model: list[Any], latent: list[Any], seed: int, steps: int, denoise: float) -> dict[str, Any]:
    return {
        "model": model,
        "seed": seed,
        "steps": steps,
        "cfg": 7.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "positive": ["6", 0],
        "negative": ["7", 0],
        "latent_image": latent,
        "denoise": denoise,
    }


def needs_of(graph: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    return {
        "nodes": sorted({n["class_type"] for n in graph.values()}),
        "models": {"checkpoints": [checkpoint]},
    }


def lane_of(needs: dict[str, Any]) -> str:
    canonical = json.dumps(needs, sort_keys=True, separators=(",", ":"))
    return "n:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def filled(graph: dict[str, Any], job_id: str, upload_sha256: str) -> dict[str, Any]:
    """What the fill stores on the job: the upload's content name, every SaveImage's prefix."""
    out = copy.deepcopy(graph)
    out["30"]["inputs"]["image"] = f"uploads/{upload_sha256}.png"
    for node in out.values():
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = f"studio/{job_id}"
    return out


@dataclass(frozen=True)
class TemplateJob:
    job_id: str
    lane: str
    graph: dict[str, Any]  # the filled graph stored on the job
    needs: dict[str, Any]


def insert_template_job(
    settings: Settings,
    upload_id: str,
    *,
    name: str = "two-pass",
    graph: dict[str, Any] | None = None,
    needs: dict[str, Any] | None = None,
    designer: str = "alice",
) -> TemplateJob:
    """A published version of template `name` (made on first use) and a queued job of it; the job's
    lane is notified as `POST /api/jobs` would."""
    graph = graph or template_graph(settings.checkpoint_name)
    needs = needs or needs_of(graph, settings.checkpoint_name)
    lane = lane_of(needs)
    spec = {
        "graph": graph,
        "inputs": [{"key": "photo", "label": "Photo", "kind": "image", "targets": [["30", "image"]]}],
        "outputs": {"results": ["9"], "passes": [{"node": "20", "label": "Draft"}]},
    }
    content = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    async def _insert() -> TemplateJob:
        engine = make_engine(settings)
        try:
            async with make_sessionmaker(engine)() as s, s.begin():
                owner = await s.scalar(select(Designer).where(Designer.name == designer))
                upload = await s.get(Upload, upload_id)
                assert owner is not None and upload is not None
                template = await s.scalar(select(Template).where(Template.name == name))
                if template is None:
                    template = Template(id=new_id(), name=name, title=name, current_version=0)
                    s.add(template)
                    await s.flush()
                version = await s.scalar(
                    select(TemplateVersion).where(
                        TemplateVersion.template_id == template.id, TemplateVersion.content_sha256 == content
                    )
                )
                if version is None:
                    template.current_version = (template.current_version or 0) + 1
                    version = TemplateVersion(
                        id=new_id(), template_id=template.id, version=template.current_version, spec=spec,
                        needs=needs, report={}, lane=lane, content_sha256=content,
                    )  # fmt: skip
                    s.add(version)
                    await s.flush()
                job_id = new_id()
                job_graph = filled(graph, job_id, upload.sha256)
                params = {"photo": upload_id}
                s.add(
                    Job(
                        id=job_id,
                        designer_id=owner.id,
                        kind=name,
                        lane=lane,
                        template_version_id=version.id,
                        style="none",
                        params=params,
                        params_hash=hashlib.sha256(job_id.encode()).hexdigest(),
                        seed=11,
                        upload_id=upload_id,
                        graph=job_graph,
                    )
                )
                notify.job_event(s, job_id, queued_kind=lane)
                return TemplateJob(job_id, lane, job_graph, needs)
        finally:
            await engine.dispose()

    return asyncio.run(_insert())


def read_images(settings: Settings, job_id: str) -> list[tuple[str, str | None, str | None, int]]:
    """The job's stored Image rows: (role, node_id, label, index), in index order."""
    from backend.models import Image

    async def _read() -> list[tuple[str, str | None, str | None, int]]:
        engine = make_engine(settings)
        try:
            async with make_sessionmaker(engine)() as s:
                rows = await s.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.index))
                return [(i.role, i.node_id, i.label, i.index) for i in rows]
        finally:
            await engine.dispose()

    return asyncio.run(_read())


def read_job(settings: Settings, job_id: str) -> Job:
    async def _read() -> Job:
        engine = make_engine(settings)
        try:
            async with make_sessionmaker(engine)() as s:
                job = await s.get(Job, job_id)
                assert job is not None
                return job
        finally:
            await engine.dispose()

    return asyncio.run(_read())


def store_graph(settings: Settings, job_id: str, graph: dict[str, Any]) -> None:
    """Replace a queued job's stored graph (a graph the server no longer accepts, say)."""

    async def _write() -> None:
        engine = make_engine(settings)
        try:
            async with make_sessionmaker(engine)() as s, s.begin():
                job = await s.get(Job, job_id)
                assert job is not None
                job.graph = graph
        finally:
            await engine.dispose()

    asyncio.run(_write())
