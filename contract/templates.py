"""Templates: the one mechanism by which the studio renders (DESIGN-templates §1). Pure: no I/O but the
built-ins' files.

A template is a declaration (`template_decl`): a ComfyUI API-format graph, the inputs a designer fills
(each a kind, targets in the graph, narrowing constraints) and the outputs. This module is the API every
tier imports; the work is split by responsibility:

- `template_decl`: the pydantic models, `parse_declaration` (field paths), the size limits;
- `template_graph`: `check_graph` (shape, links, cycles, output node; against `/object_info`), `Problem`;
- `template_inputs`: `check_inputs` (targets, kinds, narrowing, defaults, style and line-art blocks);
- `template_form`: `effective_constraints` and `input_model` (the generated, strict pydantic model);
- `template_needs`: `needs` (classes and model files per folder), `lane_of`, `content_sha256`;
- `template_fill`: `fill` (a job's graph) and the generic bypass.

The built-in templates `text`, `sketch` and `product` are `workflows/{text,sketch,product}.template.json`:
declarations whose `workflow` names the graph file (`txt2img.json`, `sketch2img.json`, `product.json`) that
`builtin_declarations` reads and writes the deployment's checkpoint (node 4 of each) and scribble ControlNet
(node 14 of the sketch graph) file names into.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from contract.template_decl import (
    MAX_GRAPH_BYTES,
    MAX_INPUTS,
    MAX_JSON_DEPTH,
    MAX_NODES,
    MAX_TARGETS,
    Constraints,
    Declaration,
    DeclarationError,
    InputDecl,
    LineArt,
    Outputs,
    PassOutput,
    StyleBlock,
    check_json_text,
    load_declaration_json,
    parse_declaration,
)
from contract.template_fill import FillError, ImageRef, bypass, fill
from contract.template_form import effective_constraints, input_model, validate_values
from contract.template_graph import UI_FORMAT_HELP, Problem, check_graph
from contract.template_inputs import check_inputs
from contract.template_needs import (
    KNOWN_LOADERS,
    MODEL_EXTENSIONS,
    FolderOf,
    Needs,
    canonical_json,
    content_sha256,
    declaration_needs,
    lane_of,
    needs,
)

__all__ = [
    "BUILTIN_NAMES",
    "KNOWN_LOADERS",
    "MAX_GRAPH_BYTES",
    "MAX_INPUTS",
    "MAX_JSON_DEPTH",
    "MAX_NODES",
    "MAX_TARGETS",
    "MODEL_EXTENSIONS",
    "NAMED_LANES",
    "UI_FORMAT_HELP",
    "Constraints",
    "Declaration",
    "DeclarationError",
    "FillError",
    "FolderOf",
    "ImageRef",
    "InputDecl",
    "LineArt",
    "Needs",
    "Outputs",
    "PassOutput",
    "Problem",
    "StyleBlock",
    "builtin_declarations",
    "bypass",
    "canonical_json",
    "check_graph",
    "check_inputs",
    "check_json_text",
    "content_sha256",
    "declaration_needs",
    "effective_constraints",
    "fill",
    "filled_targets",
    "input_model",
    "lane_of",
    "load_declaration_json",
    "needs",
    "parse_declaration",
    "validate",
    "validate_values",
]

BUILTIN_NAMES = ("text", "sketch", "product", "restyle", "stage", "edit")
# The built-ins whose lane is their name (COMFY_UI_ADDRESS); the others run in their needs' lane.
NAMED_LANES = ("text", "sketch")
# Where the deployment's model files go in the built-in graphs (node id, input).
CHECKPOINT_TARGET = ("4", "ckpt_name")
CONTROLNET_TARGET = ("14", "control_net_name")


def validate(
    decl: Declaration,
    object_info: Mapping[str, Any] | None = None,
    *,
    style_ids: Iterable[str] | None = None,
    instance: str | None = None,
) -> list[Problem]:
    """check_graph + check_inputs: every problem of a declaration on one instance (or its shape alone)."""
    problems = check_graph(decl.graph, object_info, instance, filled=filled_targets(decl))
    if any(
        p.code in ("ui_format", "graph_empty", "too_many_nodes", "too_deep", "graph_too_large")
        for p in problems
    ):
        return problems
    return problems + check_inputs(decl, object_info, style_ids, instance)


def filled_targets(decl: Declaration) -> set[tuple[str, str]]:
    """The (node, input) pairs whose graph literal a job replaces: its checks are the inputs' own."""
    found = {tuple(t) for item in decl.inputs for t in item.targets}
    for item in decl.inputs:
        if item.style is not None and item.style.lora_node is not None:
            found |= {(item.style.lora_node, n) for n in ("lora_name", "strength_model", "strength_clip")}
    return found  # type: ignore[return-value]


def builtin_declarations(
    workflows_dir: Path, *, checkpoint: str = "", controlnet: str = ""
) -> dict[str, Declaration]:
    """The built-in templates by name, their graphs carrying this deployment's model file names."""
    found: dict[str, Declaration] = {}
    for name in BUILTIN_NAMES:
        doc: dict[str, Any] = json.loads(
            (workflows_dir / f"{name}.template.json").read_text(encoding="utf-8")
        )
        graph = json.loads((workflows_dir / doc.pop("workflow")).read_text(encoding="utf-8"))
        for (node_id, input_name), value in (
            (CHECKPOINT_TARGET, checkpoint),
            (CONTROLNET_TARGET, controlnet),
        ):
            if value and node_id in graph and input_name in graph[node_id]["inputs"]:
                graph[node_id]["inputs"][input_name] = value
        found[name] = parse_declaration({**doc, "graph": graph})
    return found
