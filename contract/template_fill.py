"""A job's graph: a template version's graph with the job's input values written into it.

`fill(declaration, values, manifest, images, job_id)` copies the graph, writes each value into its
targets, an image input's ComfyUI path (`uploads/<sha256>.png`) into its LoadImage targets (bypassing its
line-art invert node when the upload is light lines on dark), then applies the style: the prompts at
`positive`/`negative` wrapped by the style's templates, the LoRA node given the style's file and strengths
or bypassed when the style has none. Every saving node's `filename_prefix` becomes `studio/<job_id>`;
`_meta` is dropped. A bypass removes a node and re-points each link to its output slot i (type T, name N)
to the node's input named N when it has one (ControlNetApplyAdvanced: positive→positive, negative→negative),
else to its input named `T.lower()` (MODEL→model, CLIP→clip, IMAGE→image).

An optional image input left empty bypasses its `bypass_when_absent` nodes (no composition sketch: the
canny ControlNet apply; no style photo: the IPAdapter). After the bypasses, nodes whose every consumer is
gone (the LoadImage of the absent image, the loaders that only fed a bypassed node) are dropped, so the
graph ComfyUI gets holds no node it would not run; a node that had no consumer (an output) always stays.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import comfy_spec
from contract.styles import Manifest
from contract.template_decl import Declaration, InputDecl

Graph = dict[str, Any]
# RETURN_TYPES of the classes a template usually bypasses, for when no /object_info is at hand.
KNOWN_OUTPUTS: dict[str, tuple[str, ...]] = {
    "LoraLoader": ("MODEL", "CLIP"),
    "LoraLoaderModelOnly": ("MODEL",),
    "ImageInvert": ("IMAGE",),
    "ControlNetApplyAdvanced": ("CONDITIONING", "CONDITIONING"),
    "IPAdapterAdvanced": ("MODEL",),
}
KNOWN_OUTPUT_NAMES: dict[str, tuple[str, ...]] = {"ControlNetApplyAdvanced": ("positive", "negative")}
SAVING_CLASSES = frozenset({"SaveImage"})


class FillError(ValueError):
    """The values cannot be written into the graph (an unknown style, a missing image)."""


@dataclass(frozen=True)
class ImageRef:
    """An image input's upload as ComfyUI reads it: its input path and whether it is dark lines on light."""

    path: str  # "uploads/<sha256>.png"
    dark_lines: bool = True


def output_types_of(graph: Graph, node_id: str, object_info: Mapping[str, Any] | None) -> tuple[str, ...]:
    class_type = graph[node_id]["class_type"]
    info = object_info.get(class_type) if object_info is not None else None
    if info is not None:
        return tuple(str(t) for t in comfy_spec.output_types(info))
    if class_type in KNOWN_OUTPUTS:
        return KNOWN_OUTPUTS[class_type]
    raise ValueError(f"the outputs of class {class_type} are unknown here")


def output_names_of(graph: Graph, node_id: str, object_info: Mapping[str, Any] | None) -> tuple[str, ...]:
    class_type = graph[node_id]["class_type"]
    info = object_info.get(class_type) if object_info is not None else None
    names = info.get("output_name") if isinstance(info, Mapping) else KNOWN_OUTPUT_NAMES.get(class_type)
    return tuple(str(n) for n in names) if isinstance(names, list | tuple) else ()


def bypass_routes(graph: Graph, node_id: str, object_info: Mapping[str, Any] | None = None) -> dict[int, str]:
    """Output slot -> the node's input a link to that slot is re-pointed to; ValueError if one is missing."""
    inputs = graph[node_id]["inputs"]
    routes: dict[int, str] = {}
    used = {
        link[1] for node in graph.values() for link in node["inputs"].values() if _links_to(link, node_id)
    }
    names = output_names_of(graph, node_id, object_info)
    for slot, type_ in enumerate(output_types_of(graph, node_id, object_info)):
        named = names[slot] if slot < len(names) else ""
        name = named if named in inputs else type_.lower()
        if slot in used and name not in inputs:
            raise ValueError(
                f"output {slot} ({type_}) is used and the node has no input {name} to pass through"
            )
        routes[slot] = name
    unknown = sorted(used - set(routes))
    if unknown:
        raise ValueError(f"links to output {unknown[0]}, which the class does not have")
    return routes


def _links_to(value: Any, node_id: str) -> bool:
    return isinstance(value, list) and len(value) == 2 and value[0] == node_id


def bypass(graph: Graph, node_id: str, object_info: Mapping[str, Any] | None = None) -> None:
    """Remove `node_id`, re-pointing links to its outputs to the inputs it passes through."""
    routes = bypass_routes(graph, node_id, object_info)
    node = graph.pop(node_id)
    for other in graph.values():
        for name, value in other["inputs"].items():
            if _links_to(value, node_id):
                other["inputs"][name] = copy.deepcopy(node["inputs"][routes[value[1]]])


def fill(
    declaration: Declaration,
    values: Mapping[str, Any],
    manifest: Manifest,
    images: Mapping[str, ImageRef],
    job_id: str,
    *,
    object_info: Mapping[str, Any] | None = None,
) -> Graph:
    """The graph a job runs. `values` are validated (by `input_model`), the seed already drawn."""
    graph: Graph = copy.deepcopy(declaration.graph)
    bypassed: list[str] = []
    for item in declaration.inputs:
        if item.kind == "style":
            continue
        if item.kind == "image":
            fallback = item.upload.absent_from if item.upload is not None else None
            image = images.get(item.key)
            if image is None and values.get(item.key) is None and fallback is not None:
                image = images.get(fallback)
            bypassed += _fill_image(graph, item, values.get(item.key), image)
            continue
        value = values.get(item.key, item.default if item.has_default else None)
        if value is None:
            continue  # optional and not given: the graph's value stays
        for node_id, name in item.targets:
            graph[node_id]["inputs"][name] = value
    for item in declaration.inputs:
        if item.kind == "style":
            bypassed += _fill_style(graph, declaration, item, values, manifest)
    consumed = _consumed(graph)
    for node_id in dict.fromkeys(bypassed):
        bypass(graph, node_id, object_info)
    if bypassed:
        drop_orphans(graph, consumed)
    savers = set(declaration.outputs.results) | {p.node for p in declaration.outputs.passes}
    for node_id, node in graph.items():
        if node["class_type"] in SAVING_CLASSES or (
            node_id in savers and "filename_prefix" in node["inputs"]
        ):
            node["inputs"]["filename_prefix"] = f"studio/{job_id}"
        node.pop("_meta", None)
    return graph


def _consumed(graph: Graph) -> set[str]:
    """The nodes some other node links to."""
    return {v[0] for node in graph.values() for v in node["inputs"].values() if _is_link(v)}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def drop_orphans(graph: Graph, consumed_before: set[str]) -> list[str]:
    """Remove, until none is left, nodes that had a consumer in `consumed_before` and have none now."""
    dropped: list[str] = []
    while True:
        orphans = sorted(consumed_before & set(graph) - _consumed(graph))
        if not orphans:
            return dropped
        for node_id in orphans:
            del graph[node_id]
        dropped += orphans


def _fill_image(graph: Graph, item: InputDecl, value: Any, image: ImageRef | None) -> list[str]:
    if value is None and image is None:
        if item.required:
            raise FillError(f"input {item.key}: an image is required")
        return [n for n in item.bypass_when_absent if n in graph]
    if image is None:
        raise FillError(f"input {item.key}: upload {value} is not resolved to an image")
    for node_id, name in item.targets:
        graph[node_id]["inputs"][name] = image.path
    if item.line_art is not None and not image.dark_lines:
        return [item.line_art.invert_node]
    return []


def _fill_style(
    graph: Graph, declaration: Declaration, item: InputDecl, values: Mapping[str, Any], manifest: Manifest
) -> list[str]:
    block = item.style
    assert block is not None
    style_id = values.get(item.key) or (item.default if item.has_default else manifest.default_style)
    if style_id not in manifest.styles:
        raise FillError(f"input {item.key}: unknown style {style_id!r}")
    style = manifest.get(style_id)
    if block.positive is not None:
        node_id, name = block.positive
        graph[node_id]["inputs"][name] = style.render_prompt(str(graph[node_id]["inputs"][name]))
    if block.negative is not None:
        node_id, name = block.negative
        graph[node_id]["inputs"][name] = style.render_negative(str(graph[node_id]["inputs"][name]))
    if block.lora_node is None:
        return []
    if not style.has_lora:
        return [block.lora_node]
    strength = values.get(block.strength_input) if block.strength_input else None
    lora = graph[block.lora_node]["inputs"]
    lora["lora_name"] = style.lora_file
    lora["strength_model"] = style.strength_model if strength is None else strength
    if "strength_clip" in lora:
        lora["strength_clip"] = style.strength_clip if strength is None else strength
    return []
