"""The graph building the built-in templates replace, kept verbatim as the oracle `fill` is held to
(test_template_fill): node ids spelled out, a bypass table, the prefix by kind."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from contract.graphs import GraphInputs, load_workflow
from contract.styles import Manifest

CHECKPOINT, LORA, POSITIVE, NEGATIVE, LATENT, SAMPLER, SAVE = "4", "10", "6", "7", "5", "3", "9"
LOAD_SKETCH, INVERT, SCALE, CONTROLNET, APPLY_CONTROLNET = "11", "12", "13", "14", "15"
BYPASS = {LORA: {0: ("model",), 1: ("clip",)}, INVERT: {0: ("image",)}}


def bypass(graph: dict[str, Any], node_id: str) -> None:
    node = graph.pop(node_id)
    for other in graph.values():
        for name, value in other["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                (input_name,) = BYPASS[node_id][value[1]]
                other["inputs"][name] = copy.deepcopy(node["inputs"][input_name])


def legacy_build_graph(
    inputs: GraphInputs, manifest: Manifest, workflows_dir: Path, *, checkpoint: str, controlnet: str
) -> dict[str, Any]:
    p = inputs.params
    style = manifest.get(p["style"])
    graph = copy.deepcopy(load_workflow(workflows_dir, inputs.kind))
    graph[CHECKPOINT]["inputs"]["ckpt_name"] = checkpoint
    if style.has_lora:
        strength = p.get("lora_strength")
        lora = graph[LORA]["inputs"]
        lora["lora_name"] = style.lora_file
        lora["strength_model"] = style.strength_model if strength is None else strength
        lora["strength_clip"] = style.strength_clip if strength is None else strength
    else:
        bypass(graph, LORA)
    graph[POSITIVE]["inputs"]["text"] = style.render_prompt(p["prompt"])
    graph[NEGATIVE]["inputs"]["text"] = style.render_negative(p.get("negative_prompt", ""))
    graph[LATENT]["inputs"].update(width=p["width"], height=p["height"], batch_size=p["num_images"])
    graph[SAMPLER]["inputs"].update(
        seed=inputs.seed, steps=p["steps"], cfg=p["cfg"], sampler_name=p["sampler"], scheduler=p["scheduler"]
    )
    prefix = "renders" if inputs.kind == "text" else "sketch"
    graph[SAVE]["inputs"]["filename_prefix"] = f"{prefix}/{inputs.job_id}"
    if inputs.kind == "sketch":
        graph[LOAD_SKETCH]["inputs"]["image"] = inputs.sketch_name
        if not inputs.sketch_dark_lines:
            bypass(graph, INVERT)
        graph[SCALE]["inputs"].update(width=p["width"], height=p["height"])
        graph[CONTROLNET]["inputs"]["control_net_name"] = controlnet
        graph[APPLY_CONTROLNET]["inputs"]["strength"] = p["sketch_strength"]
    for node in graph.values():
        node.pop("_meta", None)
    return graph
