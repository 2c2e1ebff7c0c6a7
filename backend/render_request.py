"""The render request: what one job sends to ComfyUI, directly or through the SageMaker adapter.

Built in one place for every executor: the graph (from the job's kind, params and seed), the sketch it
loads (a sketch job's upload, placed where the executor's ComfyUI reads inputs), the `extra_data` that
ComfyUI writes into each PNG, and the render metadata stored beside every image (enough to redo it).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from backend.config import Settings
from backend.models import Job
from contract.graphs import GraphInputs, build_graph
from contract.styles import Manifest

SKETCH_SUBFOLDER = "sketches"


class InvalidJob(Exception):
    """The job cannot be rendered as stored (an unknown kind or style, its upload gone...)."""


@dataclass(frozen=True)
class Sketch:
    """A sketch job's drawing, named by its content so that every server stores it once."""

    filename: str
    png: bytes
    dark_lines: bool
    subfolder: str = SKETCH_SUBFOLDER

    @property
    def path(self) -> str:
        """Where LoadImage finds it once it is in ComfyUI's input folder."""
        return f"{self.subfolder}/{self.filename}"

    def payload(self) -> dict[str, Any]:
        return {
            "subfolder": self.subfolder,
            "filename": self.filename,
            "png_base64": base64.b64encode(self.png).decode(),
        }


# Puts the sketch where the executor's ComfyUI reads inputs; returns the path its graph names.
SketchPlacer = Callable[[Sketch], Awaitable[str]]


@dataclass(frozen=True)
class RenderRequest:
    job_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    sketch: Sketch | None = None

    def payload(self) -> dict[str, Any]:
        """The SageMaker adapter's request body (`{"job_id", "graph", "extra_data", "sketch"}`)."""
        sketch = self.sketch.payload() if self.sketch is not None else None
        return {"job_id": self.job_id, "graph": self.graph, "extra_data": self.extra_data, "sketch": sketch}


def extra_data(job: Job) -> dict[str, Any]:
    """ComfyUI's `extra_data`: the job written into each PNG's metadata."""
    return {"extra_pnginfo": {"studio_job": {"id": job.id, "style": job.style}}}


def graph_for(
    job: Job, settings: Settings, manifest: Manifest, sketch_path: str | None = None, dark_lines: bool = True
) -> dict[str, Any]:
    inputs = GraphInputs(job.kind, dict(job.params), job.seed, job.id, sketch_path, dark_lines)
    return build_graph(
        inputs,
        manifest,
        settings.workflows_dir,
        checkpoint=settings.checkpoint_name,
        controlnet=settings.controlnet_name,
    )


def render_meta(job: Job, settings: Settings, manifest: Manifest) -> dict[str, Any]:
    """Everything needed to redo a render exactly: settings, seed, models with their hashes."""
    style = manifest.styles.get(job.style)
    return {
        "job_id": job.id,
        "kind": job.kind,
        "params": dict(job.params),
        "seed": job.seed,
        "style": job.style,
        "checkpoint": settings.checkpoint_name,
        "controlnet": settings.controlnet_name if job.kind == "sketch" else None,
        "lora": (
            {"file": style.lora_file, "sha256": style.sha256, "version": style.version}
            if style is not None and style.has_lora
            else None
        ),
        "upload_id": job.upload_id,
    }
