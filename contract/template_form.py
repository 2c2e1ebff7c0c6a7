"""What a template's form shows and accepts: effective constraints and the generated pydantic model.

`effective_constraints(decl, object_info)` = each target's `/object_info` spec ∩ the declared narrowing
(what a form shows as limits). `input_model(decl, object_info)` builds, with `create_model`, a strict model
of the input values by key: unknown keys refused (`extra="forbid"`), errors located by key (the API
prefixes `inputs.`), so a 422 says `inputs.steps: Input should be less than or equal to 100`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from contract import comfy_spec
from contract.template_decl import Declaration, InputDecl

MAX_SEED = 2**64 - 1  # ComfyUI's; a declaration narrows it (the built-ins to 2**53-1, exact in JSON)
TEXT_MAX_LENGTH = {"short_text": 200, "long_text": 10_000}
UPLOAD_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
STYLE_ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ObjectInfo = Mapping[str, Any]


def target_spec(
    decl: Declaration, object_info: ObjectInfo | None, node_id: str, name: str
) -> comfy_spec.InputSpec | None:
    """The spec of a target input on the instance, or None (no object_info, unknown node or class)."""
    node = decl.graph.get(node_id)
    if object_info is None or not isinstance(node, Mapping):
        return None
    info = object_info.get(str(node.get("class_type")))
    if info is None:
        return None
    try:
        return comfy_spec.input_spec(info, name)
    except ValueError:
        return None


def _narrowest(values: Iterable[Any], pick: Any) -> Any:
    found = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return pick(found) if found else None


def _intersect(lists: list[list[Any]]) -> list[Any] | None:
    if not lists:
        return None
    others = [set(map(repr, other)) for other in lists[1:]]
    return [c for c in lists[0] if all(repr(c) in o for o in others)]


def constraints_of(
    decl: Declaration, item: InputDecl, object_info: ObjectInfo | None, style_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """One input's effective constraints (only those that apply; absent = unconstrained)."""
    specs = [s for t in item.targets if (s := target_spec(decl, object_info, *t)) is not None]
    strength_of = _strength_targets(decl, item)
    specs += [s for t in strength_of if (s := target_spec(decl, object_info, *t)) is not None]
    declared = item.constraints
    out: dict[str, Any] = {}
    if item.kind in ("integer", "number", "seed"):
        lows = [s.options.get("min") for s in specs] + [declared.min, 0 if item.kind == "seed" else None]
        highs = [s.options.get("max") for s in specs] + [
            declared.max,
            MAX_SEED if item.kind == "seed" else None,
        ]
        out["min"], out["max"] = _narrowest(lows, max), _narrowest(highs, min)
        if item.kind != "seed":
            out["step"] = declared.step or _narrowest([s.options.get("step") for s in specs], max)
        if item.kind in ("integer", "seed"):
            out = {k: _whole(v) for k, v in out.items()}
    elif item.kind in ("short_text", "long_text"):
        out["max_length"] = declared.max_length or TEXT_MAX_LENGTH[item.kind]
        out["multiline"] = item.kind == "long_text"
        out["choices"] = declared.choices
    elif item.kind in ("choice", "model"):
        offered = [s.choices for s in specs if s.choices is not None]
        if declared.choices is not None:
            offered.insert(0, list(declared.choices))  # the declared order is the form's
        out["choices"] = _intersect(offered)
    elif item.kind == "style":
        ids = list(style_ids) if style_ids is not None else None
        choices = declared.choices
        out["choices"] = [c for c in choices if ids is None or c in ids] if choices else ids
    elif item.kind == "image":
        out["min_width"], out["min_height"] = declared.min_width, declared.min_height
    return {k: v for k, v in out.items() if v is not None}


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float):
        return math.ceil(value)
    return value


def _strength_targets(decl: Declaration, item: InputDecl) -> list[tuple[str, str]]:
    """A number input named by a style's strength_input fills the LoRA node's strength inputs."""
    found: list[tuple[str, str]] = []
    for other in decl.inputs:
        block = other.style
        if block is not None and block.strength_input == item.key and block.lora_node is not None:
            found.append((block.lora_node, "strength_model"))
            node = decl.graph.get(block.lora_node)
            if isinstance(node, Mapping) and "strength_clip" in (node.get("inputs") or {}):
                found.append((block.lora_node, "strength_clip"))
    return found


def effective_constraints(
    decl: Declaration, object_info: ObjectInfo | None = None, style_ids: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """By input key: spec ∩ narrowing, what a form shows."""
    ids = list(style_ids) if style_ids is not None else None
    return {item.key: constraints_of(decl, item, object_info, ids) for item in decl.inputs}


def _integral(v: Any) -> Any:
    """JSON has one number type: `768.0` is the integer 768."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _clean(multiline: bool, required: bool) -> Any:
    pattern = _CONTROL_MULTILINE if multiline else _CONTROL

    def clean(v: str) -> str:
        v = unicodedata.normalize("NFC", v)
        if pattern.search(v):
            raise ValueError("must not contain control characters")
        v = v.strip()
        if required and not v:
            raise ValueError("must not be empty or only spaces")
        return v

    return clean


def _on_step(low: Any, step: Any) -> Any:
    def check(v: Any) -> Any:
        base = low or 0
        if isinstance(v, int) and isinstance(step, int) and (v - base) % step:
            near = base + round((v - base) / step) * step
            raise ValueError(f"must be a multiple of {step} (got {v}; try {near})")
        return v

    return check


def field_type(item: InputDecl, c: Mapping[str, Any]) -> Any:
    """The pydantic type of one input's value under its effective constraints `c`."""
    kind = item.kind
    choices = c.get("choices")
    if kind in ("choice", "model", "style") and choices:
        return Literal[tuple(choices)]
    if kind in ("short_text", "long_text"):
        if choices:
            return Literal[tuple(choices)]
        field = Field(max_length=c["max_length"])
        return Annotated[str, field, AfterValidator(_clean(kind == "long_text", item.required))]
    if kind in ("integer", "seed"):
        step = c.get("step")
        return Annotated[
            int,
            BeforeValidator(_integral),
            Field(ge=c.get("min"), le=c.get("max")),
            AfterValidator(_on_step(c.get("min"), _whole(step) if step else None)),
        ]
    if kind == "number":
        return Annotated[float, Field(ge=c.get("min"), le=c.get("max"))]
    if kind == "image":
        return Annotated[
            str, Field(pattern=UPLOAD_ID_PATTERN, description="an upload id (POST /api/uploads)")
        ]
    if kind == "style":
        return Annotated[str, Field(pattern=STYLE_ID_PATTERN)]
    return Annotated[str, Field(min_length=1, max_length=255)]  # a model file of an unlisted folder


def field_of(item: InputDecl, c: Mapping[str, Any]) -> tuple[Any, Any]:
    """(type, FieldInfo) of one input for create_model, aliased by its key."""
    type_ = field_type(item, c)
    title, description = item.label, item.help or None
    if item.required:
        return type_, Field(..., alias=item.key, title=title, description=description)
    default = item.default if item.has_default else None
    return type_ | None, Field(default, alias=item.key, title=title, description=description)


def input_model(
    declaration: Declaration,
    object_info: ObjectInfo | None = None,
    *,
    style_ids: Iterable[str] | None = None,
    model_name: str = "TemplateInputs",
) -> type[BaseModel]:
    """A strict pydantic model of the input values, by key; `.model_dump(by_alias=True)` gives them back."""
    constraints = effective_constraints(declaration, object_info, style_ids)
    fields = {f"v_{item.key}": field_of(item, constraints[item.key]) for item in declaration.inputs}
    config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)
    model: type[BaseModel] = create_model(model_name, __config__=config, **fields)  # type: ignore[call-overload]
    return model


def validate_values(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values by key, defaults filled in (raises pydantic's ValidationError, located by key)."""
    return model.model_validate(dict(values)).model_dump(by_alias=True)
