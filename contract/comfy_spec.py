"""ComfyUI 0.3.64's reading of `/object_info` and its validation of one input, with its error JSON.

Shared by the emulator (`POST /prompt` validation) and the backend (template validation), so both judge a
graph's literals and links exactly as the real server's `execution.validate_inputs` does:

- An input spec is the JSON array of `/object_info`: `["INT", {"min": 0, ...}]`, `[["a", "b"], {...}]`
  (a classic combo), `["COMBO", {"options": [...]}]` (a schema node's combo) or `["MODEL"]`.
- A literal is converted by its type (`INT` → `int(v)`, `FLOAT` → `float(v)`, `STRING` → `str(v)`,
  `BOOLEAN` → `bool(v)`), the converted value is what ComfyUI queues; then `min`/`max` (for any type whose
  options carry them), then a classic combo's options. `step`, `round`, `multiline`, string lengths and the
  options of a `"COMBO"` spec are **not** checked by 0.3.64 (an unknown upscale model file is accepted and
  fails at execution); `validate_literal(..., check_schema_combo=True)` checks those options too, for
  callers that want to be stricter than the server.
- A link's type matches as `comfy_execution.validation.validate_node_input`: equal, or comma-separated
  unions that share a member, or `*` on either side.

Errors are ComfyUI's dicts: `{"type", "message", "details", "extra_info"}`; ComfyUI reports at most one per
input. No I/O here; the functions are pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ClassInfo = Mapping[str, Any]  # one class's entry of GET /object_info
Error = dict[str, Any]
# The input categories ComfyUI validates (hidden inputs are filled by the server, never checked).
CATEGORIES = ("required", "optional")
PRIMITIVES = ("INT", "FLOAT", "STRING", "BOOLEAN")
CONVERT: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
# Above this many options ComfyUI names only the count and sends `input_config: null`.
MAX_LISTED_OPTIONS = 20
# Inputs a core class checks itself (VALIDATE_INPUTS): no min/max/options check, its own rule instead
# (LoadImage/LoadImageMask: the file exists in the input directory).
VALIDATED_BY_NODE: dict[str, frozenset[str]] = {
    "LoadImage": frozenset({"image"}),
    "LoadImageMask": frozenset({"image"}),
}


@dataclass(frozen=True)
class InputSpec:
    """One declared input: `type` is a type name (`"INT"`, `"IMAGE"`, `"COMBO"`) or a classic combo's
    option list; `options` the spec's dict ({} when the spec has none)."""

    name: str
    category: str  # required | optional
    type: Any
    options: Mapping[str, Any]

    @property
    def config(self) -> list[Any]:
        """What ComfyUI sends as `input_config`: always [type, options]."""
        return [self.type, dict(self.options)]

    @property
    def is_combo(self) -> bool:
        return isinstance(self.type, list) or self.type == "COMBO"

    @property
    def choices(self) -> list[Any] | None:
        """A combo's options (classic list or a `"COMBO"` spec's `options`); None for other types."""
        if isinstance(self.type, list):
            return list(self.type)
        if self.type == "COMBO":
            return list(self.options.get("options") or [])
        return None

    @property
    def is_widget(self) -> bool:
        """A literal (widget) input rather than a link: a primitive type or a combo."""
        return self.is_combo or self.type in PRIMITIVES


def _spec(name: str, category: str, raw: Any) -> InputSpec:
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError(f"input {name!r}: a spec is a non-empty JSON array, not {raw!r}")
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], Mapping) else {}
    type_ = list(raw[0]) if isinstance(raw[0], list | tuple) else raw[0]
    return InputSpec(name, category, type_, options)


def input_spec(class_info: ClassInfo, name: str) -> InputSpec | None:
    """The declared input `name` of a class (required first, then optional), or None (ComfyUI ignores
    undeclared inputs: not validated, dropped at execution)."""
    inputs = class_info.get("input") or {}
    for category in CATEGORIES:
        section = inputs.get(category) or {}
        if name in section:
            return _spec(name, category, section[name])
    return None


def declared_inputs(class_info: ClassInfo) -> dict[str, InputSpec]:
    """Every required and optional input of a class, by name, in declaration order."""
    inputs = class_info.get("input") or {}
    found: dict[str, InputSpec] = {}
    for category in CATEGORIES:
        for name, raw in (inputs.get(category) or {}).items():
            found.setdefault(name, _spec(name, category, raw))
    return found


def output_types(class_info: ClassInfo) -> tuple[Any, ...]:
    """The class's RETURN_TYPES (what a link `[node, slot]` to it carries at each slot): a tuple, as in the
    server, so a bad slot fails with the server's words ("tuple index out of range")."""
    return tuple(class_info.get("output") or ())


def is_output_node(class_info: ClassInfo) -> bool:
    return class_info.get("output_node") is True


def types_match(received: Any, expected: Any) -> bool:
    """Whether a link carrying `received` may feed an input of type `expected` (validate_node_input).

    A received `*` matches a combo input as well: in a recorded `/object_info` it stands for the custom
    nodes' AnyType, whose comparisons always succeed in the server."""
    if received == expected:
        return True
    if received == "*":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def error(type_: str, message: str, details: str, **extra_info: Any) -> Error:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info}


def required_input_missing(name: str) -> Error:
    return error("required_input_missing", "Required input is missing", name, input_name=name)


def check_link(spec: InputSpec, value: Any, received_type: Any) -> list[Error]:
    """Errors of a link value (a JSON list) into `spec`, given the source slot's declared type.

    `received_type` is ignored when the list is not of length 2 (ComfyUI stops at `bad_linked_input`)."""
    if len(value) != 2:
        message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
        return [
            error(
                "bad_linked_input",
                message,
                spec.name,
                input_name=spec.name,
                input_config=spec.config,
                received_value=value,
            )
        ]
    if types_match(received_type, spec.type):
        return []
    return [
        error(
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            f"{spec.name}, received_type({received_type}) mismatch input_type({spec.type})",
            input_name=spec.name,
            input_config=spec.config,
            received_type=received_type,
            linked_node=value,
        )
    ]


def _range_error(type_: str, message: str, spec: InputSpec, value: Any) -> Error:
    return error(
        type_, message, spec.name, input_name=spec.name, input_config=spec.config, received_value=value
    )


def validate_literal(
    spec: InputSpec, value: Any, *, custom_validated: bool = False, check_schema_combo: bool = False
) -> tuple[bool, Any, list[Error]]:
    """Validate a constant (non-link) value as 0.3.64 does: (ok, the converted value, errors).

    `{"__value__": x}` is unwrapped first. `custom_validated` is for inputs a node checks itself
    (`VALIDATED_BY_NODE`): only the conversion applies. Comparing a non-number with a `min`/`max` raises
    TypeError, as it does in the server (where it becomes `exception_during_validation`)."""
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if isinstance(spec.type, str) and spec.type in CONVERT:
        try:
            value = CONVERT[spec.type](value)
        except Exception as exc:  # ComfyUI catches every conversion failure alike
            return False, value, [_conversion_error(spec, value, exc)]
    if custom_validated:
        return True, value, []
    if "min" in spec.options and value < spec.options["min"]:
        message = f"Value {value} smaller than min of {spec.options['min']}"
        return False, value, [_range_error("value_smaller_than_min", message, spec, value)]
    if "max" in spec.options and value > spec.options["max"]:
        message = f"Value {value} bigger than max of {spec.options['max']}"
        return False, value, [_range_error("value_bigger_than_max", message, spec, value)]
    choices = spec.choices if isinstance(spec.type, list) or check_schema_combo else None
    if choices is not None and value not in choices:
        return False, value, [_not_in_list(spec, value, choices)]
    return True, value, []


def _conversion_error(spec: InputSpec, value: Any, exc: Exception) -> Error:
    return error(
        "invalid_input_type",
        f"Failed to convert an input value to a {spec.type} value",
        f"{spec.name}, {value}, {exc}",
        input_name=spec.name,
        input_config=spec.config,
        received_value=value,
        exception_message=str(exc),
    )


def _not_in_list(spec: InputSpec, value: Any, choices: list[Any]) -> Error:
    many = len(choices) > MAX_LISTED_OPTIONS
    listing = f"(list of length {len(choices)})" if many else str(choices)
    return error(
        "value_not_in_list",
        "Value not in list",
        f"{spec.name}: '{value}' not in {listing}",
        input_name=spec.name,
        input_config=None if many else spec.config,
        received_value=value,
    )
