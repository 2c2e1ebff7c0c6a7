"""Build the ComfyUI graph of a job from `contract/workflows/*.json` and the style manifest.

The graphs are addressed by node id (see `contract/workflows/README.md`); a node that a job does not
need (the LoRA for style `none`, the invert for a sketch that is already white on black) is bypassed:
removed, with every link to its outputs re-pointed to the matching input. Whoever edits a graph (the
backend for a job, the SageMaker adapter for its warm-up) does it through the functions here, so the
node ids are spelled out here only (the README documents them).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from contract.styles import Manifest
from contract.template_decl import Declaration
from contract.template_fill import FillError, ImageRef, fill
from contract.templates import builtin_declarations

Graph = dict[str, Any]

CHECKPOINT, LORA, POSITIVE, NEGATIVE, LATENT, SAMPLER, SAVE = "4", "10", "6", "7", "5", "3", "9"
DECODE = "8"  # VAEDecode: fixed by the file, named for the warm-up's PreviewImage
LOAD_SKETCH, INVERT, SCALE, CONTROLNET, APPLY_CONTROLNET = "11", "12", "13", "14", "15"
WORKFLOW_FILES = {"text": "txt2img.json", "sketch": "sketch2img.json"}
WORKFLOWS_DIR = Path(__file__).resolve().with_name("workflows")
# output slot of a bypassed node -> the link that replaces it
BYPASS = {
    LORA: {0: ("model",), 1: ("clip",)},
    INVERT: {0: ("image",)},
}


class GraphError(ValueError):
    """The job cannot be turned into a graph (unknown style, missing sketch...)."""


@dataclass(frozen=True)
class GraphInputs:
    """Everything a graph needs, resolved from the job by whoever submits it."""

    kind: str
    params: dict[str, Any]
    seed: int
    job_id: str
    sketch_name: str | None = None  # ComfyUI input path, e.g. "sketches/<sha256>.png"
    sketch_dark_lines: bool = True


@lru_cache(maxsize=8)
def _load_template(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load_workflow(workflows_dir: Path, kind: str) -> Graph:
    try:
        name = WORKFLOW_FILES[kind]
    except KeyError:
        raise GraphError(f"unknown job kind {kind!r}") from None
    graph: Graph = json.loads(_load_template(workflows_dir / name))
    return graph


def bypass(graph: Graph, node_id: str) -> None:
    """Remove `node_id`, re-pointing links to its outputs to the inputs it passed through."""
    node = graph.pop(node_id)
    for other in graph.values():
        for name, value in other["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                (input_name,) = BYPASS[node_id][value[1]]
                other["inputs"][name] = copy.deepcopy(node["inputs"][input_name])


@lru_cache(maxsize=8)
def _builtins(workflows_dir: Path, checkpoint: str, controlnet: str) -> dict[str, Declaration]:
    return builtin_declarations(workflows_dir, checkpoint=checkpoint, controlnet=controlnet)


def build_graph(
    inputs: GraphInputs, manifest: Manifest, workflows_dir: Path, *, checkpoint: str, controlnet: str
) -> Graph:
    """A legacy job's graph: its built-in template filled (`contract.templates.fill`), with the legacy
    prefix (`renders/` or `sketch/`) and the sketch's path as the backend uploaded it."""
    p = inputs.params
    if p["style"] not in manifest.styles:
        raise GraphError(f"unknown style {p['style']!r}")
    if inputs.kind not in WORKFLOW_FILES:
        raise GraphError(f"unknown job kind {inputs.kind!r}")
    if inputs.kind == "sketch" and not inputs.sketch_name:
        raise GraphError("a sketch job needs its uploaded sketch")
    declaration = _builtins(workflows_dir, checkpoint, controlnet)[inputs.kind]
    images = {}
    if inputs.sketch_name:
        images["upload_id"] = ImageRef(inputs.sketch_name, inputs.sketch_dark_lines)
    try:
        graph = fill(declaration, {**p, "seed": inputs.seed}, manifest, images, inputs.job_id)
    except FillError as exc:
        raise GraphError(str(exc)) from exc
    prefix = "renders" if inputs.kind == "text" else "sketch"
    graph[SAVE]["inputs"]["filename_prefix"] = f"{prefix}/{inputs.job_id}"
    return graph


def warmup_graph(workflows_dir: Path, *, checkpoint: str = "", size_px: int = 64) -> Graph:
    """The text graph cut down to load the checkpoint: no LoRA, 1 step, a PreviewImage (nothing saved)."""
    graph = load_workflow(workflows_dir, "text")
    bypass(graph, LORA)
    if checkpoint:
        graph[CHECKPOINT]["inputs"]["ckpt_name"] = checkpoint
    graph[LATENT]["inputs"].update(width=size_px, height=size_px, batch_size=1)
    graph[SAMPLER]["inputs"]["steps"] = 1
    graph[SAVE] = {"class_type": "PreviewImage", "inputs": {"images": [DECODE, 0]}}
    return _without_meta(graph)


def _without_meta(graph: Graph) -> Graph:
    """`_meta` holds titles for people editing the files; what is sent is only what ComfyUI reads."""
    for node in graph.values():
        node.pop("_meta", None)
    return graph
