"""The render request: what one job sends to ComfyUI, directly or through the SageMaker adapter.

Built in one place for every executor: the graph (the filled graph stored on the job at creation; for a
job queued before templates, built from its kind, params and seed), the images it loads (each image
input's upload, content-named and placed where the executor's ComfyUI reads inputs), the `extra_data`
that ComfyUI writes into each PNG, what the job keeps of the outputs (results and labelled passes), and
the render metadata stored beside every image (enough to redo it).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.config import Settings
from backend.models import Job
from contract.graphs import SAVE, GraphInputs, build_graph
from contract.styles import Manifest
from contract.template_needs import needs

SKETCH_SUBFOLDER = "sketches"  # where a job queued before templates loads its sketch
UPLOADS_SUBFOLDER = "uploads"  # where a template's fill points its image inputs (`uploads/<sha256>.png`)


class InvalidJob(Exception):
    """The job cannot be rendered as stored (an unknown kind or style, its upload gone...)."""


@dataclass(frozen=True)
class InputImage:
    """An image a LoadImage node of the graph reads, named by its content so every server stores it once."""

    filename: str  # "<sha256>.png"
    png: bytes
    dark_lines: bool
    subfolder: str = UPLOADS_SUBFOLDER

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


# Puts an image where the executor's ComfyUI reads inputs; returns the path it is stored under.
ImagePlacer = Callable[[InputImage], Awaitable[str]]


@dataclass(frozen=True)
class Pass:
    node_id: str
    label: str


@dataclass(frozen=True)
class Outputs:
    """Which SaveImage nodes' images the job keeps: its renders (`results`) and labelled passes."""

    results: tuple[str, ...] = (SAVE,)
    passes: tuple[Pass, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.results + tuple(p.node_id for p in self.passes)

    def label(self, node_id: str) -> str | None:
        return next((p.label for p in self.passes if p.node_id == node_id), None)

    @classmethod
    def of_spec(cls, spec: Mapping[str, Any] | None) -> Outputs:
        """A template version's `outputs` (none, as before templates: node "9")."""
        outputs = (spec or {}).get("outputs") or {}
        results = tuple(str(n) for n in outputs.get("results") or ()) or (SAVE,)
        passes = tuple(
            Pass(str(p["node"]), str(p.get("label") or p["node"]))
            for p in outputs.get("passes") or ()
            if isinstance(p, dict) and "node" in p
        )
        return cls(results, passes)


@dataclass(frozen=True)
class RenderRequest:
    job_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    images: tuple[InputImage, ...] = ()
    outputs: Outputs = field(default_factory=Outputs)

    def payload(self) -> dict[str, Any]:
        """The SageMaker adapter's request body (`{"job_id", "graph", "extra_data", "images"}`)."""
        return {
            "job_id": self.job_id,
            "graph": self.graph,
            "extra_data": self.extra_data,
            "images": [image.payload() for image in self.images],
        }


def extra_data(job: Job) -> dict[str, Any]:
    """ComfyUI's `extra_data`: the job written into each PNG's metadata."""
    return {"extra_pnginfo": {"studio_job": {"id": job.id, "style": job.style}}}


def image_upload_ids(job: Job, spec: Mapping[str, Any] | None) -> list[str]:
    """The uploads the job's graph loads, in declaration order: its version's image inputs (their values
    in `job.params` are upload ids); a job queued before templates, its sketch (`job.upload_id`)."""
    if spec is None:
        return [job.upload_id] if job.kind == "sketch" and job.upload_id else []
    ids: list[str] = []
    for decl in spec.get("inputs") or ():
        if isinstance(decl, dict) and decl.get("kind") == "image":
            value = job.params.get(str(decl.get("key")))
            if isinstance(value, str) and value and value not in ids:
                ids.append(value)
    if not ids and job.upload_id:
        ids.append(job.upload_id)  # a built-in sketch whose declaration names its input otherwise
    return ids


def subfolder_in(graph: Mapping[str, Any], filename: str, default: str = UPLOADS_SUBFOLDER) -> str:
    """The input subfolder under which the graph loads `filename` (its literal `<subfolder>/<filename>`)."""
    for node in graph.values():
        for value in (node.get("inputs") or {}).values() if isinstance(node, dict) else ():
            if isinstance(value, str) and value.endswith(f"/{filename}"):
                return value[: -len(filename) - 1]
    return default


def repoint(graph: dict[str, Any], old: str, new: str) -> None:
    """Every literal input equal to `old` becomes `new` (ComfyUI stored an image under another name)."""
    for node in graph.values():
        inputs = node.get("inputs") or {}
        for name, value in inputs.items():
            if value == old:
                inputs[name] = new


def sampling_steps(graph: Mapping[str, Any]) -> dict[str, int]:
    """The sampling nodes of a graph (those with an int `steps` literal) and their steps: the progress of
    a render is the steps done across them, out of their sum."""
    steps: dict[str, int] = {}
    for node_id, node in graph.items():
        value = (node.get("inputs") or {}).get("steps") if isinstance(node, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            steps[str(node_id)] = value
    return steps


def graph_for(
    job: Job, settings: Settings, manifest: Manifest, sketch_path: str | None = None, dark_lines: bool = True
) -> dict[str, Any]:
    """The graph of a job queued before templates (no stored graph), built as it was then."""
    inputs = GraphInputs(job.kind, dict(job.params), job.seed, job.id, sketch_path, dark_lines)
    return build_graph(
        inputs,
        manifest,
        settings.workflows_dir,
        checkpoint=settings.checkpoint_name,
        controlnet=settings.controlnet_name,
    )


def render_meta(job: Job, settings: Settings, manifest: Manifest) -> dict[str, Any]:
    """Everything needed to redo a render exactly: settings, seed, models with their hashes.

    The model files are read from the graph the job sent (a template's own checkpoint or ControlNets
    included); a job stored before graphs were (pre-0006) names the deployment's."""
    style = manifest.styles.get(job.style)
    models = needs(job.graph).to_json()["models"] if job.graph else {}
    checkpoints = models.get("checkpoints") or [settings.checkpoint_name]
    controlnets = models.get("controlnet") or ([settings.controlnet_name] if job.kind == "sketch" else [])
    return {
        "job_id": job.id,
        "kind": job.kind,
        "template_version_id": job.template_version_id,
        "params": dict(job.params),
        "seed": job.seed,
        "style": job.style,
        "checkpoint": checkpoints[0],
        "controlnet": controlnets[0] if controlnets else None,
        "models": models,
        "lora": (
            {"file": style.lora_file, "sha256": style.sha256, "version": style.version}
            if style is not None and style.has_lora
            else None
        ),
        "upload_id": job.upload_id,
    }
