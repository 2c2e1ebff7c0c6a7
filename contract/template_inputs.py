"""Declared inputs and outputs judged against the graph and, when given, an instance's `/object_info`.

`check_inputs(decl, object_info=None, style_ids=None, instance=None)` returns `Problem`s: each target
exists and is an input of its node's class, holds a literal (a declared input replaces a value, not a
link), the input's kind fits the target's type, constraints only narrow the spec, defaults are valid, style
and line-art blocks name nodes that can be filled or bypassed, outputs name saving nodes. Without
`object_info` only what the graph itself says is checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError, create_model

from contract import comfy_spec
from contract.template_decl import Declaration, InputDecl, a
from contract.template_fill import bypass_routes
from contract.template_form import constraints_of, field_type, target_spec
from contract.template_graph import OUTPUT_CLASSES, Problem, where
from contract.template_needs import KNOWN_LOADERS, is_model_file

ObjectInfo = Mapping[str, Any]
KIND_TYPES = {
    "integer": "INT",
    "seed": "INT",
    "number": "FLOAT",
    "short_text": "STRING",
    "long_text": "STRING",
}
KNOWN_NOT_SAVING = frozenset({"KSampler", "KSamplerAdvanced", "VAEDecode", "VAEEncode", "LoadImage"})
NARROW = "constraints only narrow"
LORA_CLASSES = frozenset({"LoraLoader", "LoraLoaderModelOnly"})


class _Checker:
    def __init__(self, decl: Declaration, object_info: ObjectInfo | None, instance: str | None) -> None:
        self.decl, self.object_info, self.instance = decl, object_info, instance
        self.problems: list[Problem] = []

    def add(
        self, code: str, field: str, what: str, node_id: str | None = None, name: str | None = None
    ) -> None:
        node = self.decl.graph.get(node_id) if node_id is not None else None
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        cls = class_type if isinstance(class_type, str) else None
        prefix = where(node_id, cls, name) + ": " if node_id is not None else ""
        suffix = f" (on {self.instance})" if self.instance else ""
        self.problems.append(Problem(code, prefix + what + suffix, node_id, cls, name, self.instance, field))

    def node(self, node_id: str) -> Mapping[str, Any] | None:
        node = self.decl.graph.get(node_id)
        return node if isinstance(node, Mapping) and isinstance(node.get("inputs"), Mapping) else None

    def class_info(self, node_id: str) -> Mapping[str, Any] | None:
        node = self.node(node_id)
        if node is None or self.object_info is None:
            return None
        info = self.object_info.get(str(node.get("class_type")))
        return info if isinstance(info, Mapping) else None


def check_inputs(
    decl: Declaration,
    object_info: ObjectInfo | None = None,
    style_ids: Iterable[str] | None = None,
    instance: str | None = None,
) -> list[Problem]:
    ids = list(style_ids) if style_ids is not None else None
    check = _Checker(decl, object_info, instance)
    taken: dict[tuple[str, str], str] = {}
    strength_keys = {i.style.strength_input for i in decl.inputs if i.style and i.style.strength_input}
    for index, item in enumerate(decl.inputs):
        field = f"inputs.{index}"
        if not item.targets and item.kind != "style" and item.key not in strength_keys:
            check.add(
                "no_targets", f"{field}.targets", f"input {item.key}: names no target (node id, input name)"
            )
        for t_index, (node_id, name) in enumerate(item.targets):
            where_ = f"{field}.targets.{t_index}"
            if _check_target(check, item, where_, node_id, name):
                if (node_id, name) in taken:
                    what = f"filled by both inputs {taken[node_id, name]} and {item.key}"
                    check.add("target_taken", where_, what, node_id, name)
                taken[node_id, name] = item.key
        if item.style is not None:
            _check_style(check, item, field, ids)
        if item.line_art is not None:
            _check_bypassable(check, item.line_art.invert_node, f"{field}.line_art.invert_node", item.key)
        for b_index, node_id in enumerate(item.bypass_when_absent):
            _check_bypassable(check, node_id, f"{field}.bypass_when_absent.{b_index}", item.key)
        _check_default(check, item, field, ids)
    _check_outputs(check)
    return check.problems


def _check_target(check: _Checker, item: InputDecl, field: str, node_id: str, name: str) -> bool:
    node = check.node(node_id)
    if node is None:
        check.add(
            "target_missing_node",
            field,
            f"input {item.key} targets node {node_id}, which is not in the graph",
        )
        return False
    info = check.class_info(node_id)
    spec = target_spec(check.decl, check.object_info, node_id, name)
    if info is not None and spec is None:
        check.add(
            "target_not_an_input", field, f"input {item.key}: the class has no such input", node_id, name
        )
        return False
    if info is None and name not in node["inputs"]:
        check.add(
            "target_not_an_input", field, f"input {item.key}: the node has no such input", node_id, name
        )
        return False
    if isinstance(node["inputs"].get(name), list):
        what = f"input {item.key}: is linked from another node; a declared input replaces a value, not a link"
        check.add("target_is_link", field, what, node_id, name)
        return False
    if spec is not None:
        _check_kind(check, item, field, node_id, spec)
    return True


def _check_kind(
    check: _Checker, item: InputDecl, field: str, node_id: str, spec: comfy_spec.InputSpec
) -> None:
    kind, name = item.kind, spec.name
    shown = "COMBO" if spec.is_combo else spec.type
    class_type = check.decl.graph[node_id]["class_type"]
    if kind in KIND_TYPES:
        fits = spec.type == KIND_TYPES[kind]
    elif kind == "choice":
        fits = spec.is_combo
    elif kind == "image":
        fits = spec.is_combo and (
            spec.options.get("image_upload") is True
            or name in comfy_spec.VALIDATED_BY_NODE.get(class_type, ())
        )
    else:  # model
        files = spec.choices or []
        fits = spec.is_combo and (
            (class_type, name) in KNOWN_LOADERS or item.folder is not None or any(map(is_model_file, files))
        )
    if not fits:
        what = f"input {item.key}: {a(kind)} input cannot fill {a(str(shown))} input"
        check.add("kind_mismatch", field, what, node_id, name)
        return
    _check_narrowing(check, item, field, node_id, spec)


def _check_narrowing(
    check: _Checker, item: InputDecl, field: str, node_id: str, spec: comfy_spec.InputSpec
) -> None:
    declared, options, name = item.constraints, spec.options, spec.name
    base = f"{field.rsplit('.targets', 1)[0]}.constraints"
    low, high = options.get("min"), options.get("max")
    if declared.min is not None and low is not None and declared.min < low:
        what = f"input {item.key}: min {declared.min:g} is below the input's min {low:g} ({NARROW})"
        check.add("constraint_wider", f"{base}.min", what, node_id, name)
    if declared.max is not None and high is not None and declared.max > high:
        what = f"input {item.key}: max {declared.max:g} is above the input's max {high:g} ({NARROW})"
        check.add("constraint_wider", f"{base}.max", what, node_id, name)
    step = options.get("step")
    if declared.step is not None and spec.type == "INT" and isinstance(step, int) and step > 1:
        if declared.step % step:
            what = f"input {item.key}: step {declared.step:g} is not a multiple of the input's step {step}"
            check.add("constraint_wider", f"{base}.step", what, node_id, name)
    offered = spec.choices
    if declared.choices is not None and offered is not None:
        missing = [c for c in declared.choices if c not in offered]
        if missing:
            listing = ", ".join(map(str, missing[:10]))
            what = f"input {item.key}: choice(s) {listing} not offered by the input"
            check.add("choice_not_offered", f"{base}.choices", what, node_id, name)


def _check_style(check: _Checker, item: InputDecl, field: str, ids: list[str] | None) -> None:
    block = item.style
    assert block is not None
    if block.lora_node is not None:
        node = check.node(block.lora_node)
        info = check.class_info(block.lora_node)
        lora_field = f"{field}.style.lora_node"
        if node is None:
            what = f"input {item.key}: the style's lora_node {block.lora_node} is not in the graph"
            check.add("style_lora_node", lora_field, what)
        elif node["class_type"] not in LORA_CLASSES and (
            info is None or comfy_spec.input_spec(info, "lora_name") is None
        ):
            what = f"input {item.key}: the style's lora_node must be a LoraLoader or LoraLoaderModelOnly"
            check.add("style_lora_node", lora_field, what, block.lora_node)
        else:
            _check_bypassable(check, block.lora_node, lora_field, item.key)
    for side in ("positive", "negative"):
        target = getattr(block, side)
        if target is None:
            continue
        node = check.node(target[0])
        value = node["inputs"].get(target[1]) if node is not None else None
        if not isinstance(value, str):
            what = f"input {item.key}: the style's {side} prompt must be a text value in the graph"
            check.add(
                "style_prompt",
                f"{field}.style.{side}",
                what,
                target[0] if node else None,
                target[1] if node else None,
            )
    strength = block.strength_input
    if strength is not None and not any(i.key == strength and i.kind == "number" for i in check.decl.inputs):
        what = f"input {item.key}: strength_input {strength} is not a number input of this template"
        check.add("style_strength_input", f"{field}.style.strength_input", what)
    if ids is not None and item.constraints.choices:
        unknown = [c for c in item.constraints.choices if c not in ids]
        if unknown:
            listing, known = ", ".join(map(str, unknown)), ", ".join(ids)
            what = f"input {item.key}: unknown style(s) {listing} (styles: {known})"
            check.add("choice_not_offered", f"{field}.constraints.choices", what)


def _check_bypassable(check: _Checker, node_id: str, field: str, key: str) -> None:
    node = check.node(node_id)
    if node is None:
        check.add("bypass_node_missing", field, f"input {key}: node {node_id} is not in the graph")
        return
    try:
        bypass_routes(check.decl.graph, node_id, check.object_info)
    except ValueError as exc:
        check.add("not_bypassable", field, f"input {key}: cannot be bypassed: {exc}", node_id)


def _check_default(check: _Checker, item: InputDecl, field: str, ids: list[str] | None) -> None:
    if not item.has_default:
        return
    constraints = constraints_of(check.decl, item, check.object_info, ids)
    type_ = field_type(item, constraints)
    probe = create_model("Default", value=(type_, ...), __config__={"strict": True})
    try:
        probe.model_validate({"value": item.default})
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        check.add("bad_default", f"{field}.default", f"input {item.key}: default {item.default!r}: {message}")


def _check_outputs(check: _Checker) -> None:
    outputs = check.decl.outputs
    listed = [(f"outputs.results.{i}", n) for i, n in enumerate(outputs.results)]
    listed += [(f"outputs.passes.{i}.node", p.node) for i, p in enumerate(outputs.passes)]
    for field, node_id in listed:
        node = check.node(node_id)
        if node is None:
            check.add("output_missing_node", field, f"output node {node_id} is not in the graph")
            continue
        info = check.class_info(node_id)  # without it only the core savers are known
        saves = comfy_spec.is_output_node(info) if info is not None else node["class_type"] in OUTPUT_CLASSES
        if not saves and (info is not None or node["class_type"] in KNOWN_NOT_SAVING):
            check.add("output_not_saving", field, "is not an output node (it saves no image)", node_id)
