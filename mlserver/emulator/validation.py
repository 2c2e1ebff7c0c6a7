"""POST /prompt validation in ComfyUI 0.3.64's order, with its error JSON (reference §1.1, §4.2).

`validate_prompt` returns (ok, error, good_outputs, node_errors) exactly as ComfyUI's does; the prompt's
constant inputs are converted in place (INT/FLOAT/STRING/BOOLEAN), as ComfyUI stores the converted copy.
Each class is judged by its `/object_info` entry (the catalogue's, or a recorded one) through
contract.comfy_spec, the one reading of input specs the backend shares.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from contract.comfy_spec import (
    VALIDATED_BY_NODE,
    ClassInfo,
    InputSpec,
    check_link,
    declared_inputs,
    error,
    is_output_node,
    output_types,
    required_input_missing,
    validate_literal,
)

Prompt = dict[str, Any]
Lookup = Callable[[str], ClassInfo | None]
FileExists = Callable[[str], bool]
Validated = dict[str, tuple[bool, list[dict[str, Any]], str]]


def prompt_error(type_: str, message: str, details: str) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": {}}


def _full_type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    return type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"


def memoized(lookup: Lookup) -> Lookup:
    """One lookup per class per validation (the catalogue's entries list folders)."""
    seen: dict[str, ClassInfo | None] = {}

    def _lookup(class_type: str) -> ClassInfo | None:
        if class_type not in seen:
            seen[class_type] = lookup(class_type)
        return seen[class_type]

    return _lookup


class Validator:
    def __init__(self, prompt: Prompt, lookup: Lookup, input_exists: FileExists) -> None:
        self.prompt = prompt
        self.lookup = lookup
        self.input_exists = input_exists
        self.validated: Validated = {}

    def info(self, node_id: str) -> ClassInfo:
        info = self.lookup(self.prompt[node_id]["class_type"])
        if info is None:  # only known classes pass validate_prompt's first walk
            raise KeyError(self.prompt[node_id]["class_type"])
        return info

    def node(self, unique_id: str) -> tuple[bool, list[dict[str, Any]], str]:
        if unique_id in self.validated:
            return self.validated[unique_id]
        inputs = self.prompt[unique_id]["inputs"]
        class_type = self.prompt[unique_id]["class_type"]
        specs = declared_inputs(self.info(unique_id))
        custom = VALIDATED_BY_NODE.get(class_type, frozenset())
        errors: list[dict[str, Any]] = []
        valid = True
        for name in set(specs):  # a set, as ComfyUI walks them: the order of errors is not stable
            spec = specs[name]
            if name not in inputs:
                if spec.category == "required":
                    errors.append(required_input_missing(name))
                continue
            value = inputs[name]
            if isinstance(value, list):
                valid = self._link(spec, value, errors) and valid
                continue
            ok, inputs[name], errs = validate_literal(spec, value, custom_validated=name in custom)
            errors.extend(errs)
            valid = valid and ok
        for name in sorted(custom & set(inputs)):
            if not isinstance(inputs[name], list) and not self.input_exists(str(inputs[name])):
                details = f"{name} - Invalid image file: {inputs[name]}"
                errors.append(
                    error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        details,
                        input_name=name,
                    )
                )
        result = (valid and not errors, errors, unique_id)
        self.validated[unique_id] = result
        return result

    def _link(self, spec: InputSpec, value: list[Any], errors: list[dict[str, Any]]) -> bool:
        if len(value) != 2:
            errors.extend(check_link(spec, value, None))
            return False
        source_id = value[0]
        received = output_types(self.info(source_id))[value[1]]  # KeyError/IndexError: ComfyUI's too
        mismatch = check_link(spec, value, received)
        if mismatch:
            errors.extend(mismatch)
            return False
        try:
            ok, _, _ = self.node(source_id)
        except Exception as exc:
            inner = error(
                "exception_during_inner_validation",
                "Exception when validating inner node",
                str(exc),
                input_name=spec.name,
                input_config=spec.config,
                exception_message=str(exc),
                exception_type=_full_type_name(exc),
                traceback=traceback.format_tb(exc.__traceback__),
                linked_node=value,
            )
            self.validated[source_id] = (False, [inner], source_id)
            return False
        return ok


def _outputs(
    prompt: Prompt, partial_targets: list[str] | None, lookup: Lookup
) -> tuple[list[str], dict[str, Any] | None]:
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            details = f"Node ID '#{node_id}'"
            return [], prompt_error(
                "invalid_prompt", "Cannot execute because a node is missing the class_type property.", details
            )
        info = lookup(node["class_type"]) if isinstance(node["class_type"], str) else None
        if info is None:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return [], prompt_error("invalid_prompt", message, f"Node ID '#{node_id}'")
        node.setdefault("inputs", {})
        if is_output_node(info) and (partial_targets is None or node_id in partial_targets):
            outputs.append(node_id)
    if not outputs:
        return [], prompt_error("prompt_no_outputs", "Prompt has no outputs", "")
    return outputs, None


def validate_prompt(
    prompt: Any, partial_targets: list[str] | None, lookup: Lookup, input_exists: FileExists
) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    if not isinstance(prompt, dict):
        prompt = {}
    lookup = memoized(lookup)
    outputs, err = _outputs(prompt, partial_targets, lookup)
    if err is not None:
        return False, err, [], {}
    validator = Validator(prompt, lookup, input_exists)
    good: list[str] = []
    failures: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for out in outputs:
        try:
            valid, reasons, _ = validator.node(out)
        except Exception as exc:
            valid = False
            reasons = [
                error(
                    "exception_during_validation",
                    "Exception when validating node",
                    str(exc),
                    exception_type=_full_type_name(exc),
                    traceback=traceback.format_tb(exc.__traceback__),
                )
            ]
            validator.validated[out] = (False, reasons, out)
        if valid:
            good.append(out)
            continue
        failures.append((out, reasons))
        for node_id, (ok, errs, _) in validator.validated.items():
            if not ok and errs:
                entry = node_errors.setdefault(
                    node_id,
                    {"errors": errs, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
                )
                entry["dependent_outputs"].append(out)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failures for e in errs)
        err = prompt_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return False, err, [], node_errors
    return True, None, good, node_errors
