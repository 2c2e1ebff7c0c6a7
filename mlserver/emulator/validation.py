"""POST /prompt validation in ComfyUI 0.3.64's order, with its error JSON (reference §1.1, §4.2).

`validate_prompt` returns (ok, error, good_outputs, node_errors) exactly as ComfyUI's does; the prompt's
constant inputs are converted in place (INT/FLOAT/STRING/BOOLEAN), as ComfyUI stores the converted copy.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from mlserver.emulator.nodes import CATALOGUE, Dynamic, NodeClass, resolve_options

Prompt = dict[str, Any]
Lister = Callable[[Dynamic], list[str]]
FileExists = Callable[[str], bool]
Validated = dict[str, tuple[bool, list[dict[str, Any]], str]]
CONVERT: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def prompt_error(type_: str, message: str, details: str) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": {}}


def _types_match(received: str, expected: Any) -> bool:
    if not isinstance(expected, str):
        return True
    if received == "*" or expected == "*" or received == expected:
        return True
    return bool(set(received.split(",")) & set(expected.split(",")))


def _full_type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    return type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"


class Validator:
    def __init__(self, prompt: Prompt, lister: Lister, input_exists: FileExists) -> None:
        self.prompt = prompt
        self.lister = lister
        self.input_exists = input_exists
        self.validated: Validated = {}

    def node(self, unique_id: str) -> tuple[bool, list[dict[str, Any]], str]:
        if unique_id in self.validated:
            return self.validated[unique_id]
        inputs = self.prompt[unique_id]["inputs"]
        node = CATALOGUE[self.prompt[unique_id]["class_type"]]
        errors: list[dict[str, Any]] = []
        valid = True
        for name in set(node.input_specs()):
            spec = resolve_options(node.input_specs()[name], self.lister)
            if name not in inputs:
                if name in node.required:
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                    valid = False
                continue
            value = inputs[name]
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            elif isinstance(value, list):
                ok = self._link(name, spec, value, errors)
                valid = valid and ok
                continue
            ok = self._constant(node, unique_id, name, spec, value, errors)
            valid = valid and ok
        if node.name == "LoadImage" and "image" in inputs and not isinstance(inputs["image"], list):
            image = str(inputs["image"])
            if not self.input_exists(image):
                errors.append(
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": f"image - Invalid image file: {image}",
                        "extra_info": {"input_name": "image"},
                    }
                )
                valid = False
        result = (valid and not errors, errors, unique_id)
        self.validated[unique_id] = result
        return result

    def _link(self, name: str, spec: Any, value: list[Any], errors: list[dict[str, Any]]) -> bool:
        info = [spec[0], *spec[1:]] if len(spec) > 1 else [spec[0]]
        if len(value) != 2:
            errors.append(
                {
                    "type": "bad_linked_input",
                    "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    "details": name,
                    "extra_info": {"input_name": name, "input_config": info, "received_value": value},
                }
            )
            return False
        source_id = value[0]
        source = CATALOGUE[self.prompt[source_id]["class_type"]]  # KeyError for a missing node: ComfyUI's too
        received = source.outputs[value[1]]
        if not _types_match(received, spec[0]):
            errors.append(
                {
                    "type": "return_type_mismatch",
                    "message": "Return type mismatch between linked nodes",
                    "details": f"{name}, received_type({received}) mismatch input_type({spec[0]})",
                    "extra_info": {
                        "input_name": name,
                        "input_config": info,
                        "received_type": received,
                        "linked_node": value,
                    },
                }
            )
            return False
        try:
            ok, _, _ = self.node(source_id)
        except Exception as exc:
            self.validated[source_id] = (
                False,
                [
                    {
                        "type": "exception_during_inner_validation",
                        "message": "Exception when validating inner node",
                        "details": str(exc),
                        "extra_info": {
                            "input_name": name,
                            "input_config": info,
                            "exception_message": str(exc),
                            "exception_type": _full_type_name(exc),
                            "traceback": traceback.format_tb(exc.__traceback__),
                            "linked_node": value,
                        },
                    }
                ],
                source_id,
            )
            return False
        return ok

    def _constant(
        self, node: NodeClass, unique_id: str, name: str, spec: Any, value: Any, errors: list[dict[str, Any]]
    ) -> bool:
        type_input, options = spec[0], (spec[1] if len(spec) > 1 else {})
        info = [type_input, *spec[1:]] if len(spec) > 1 else [type_input]
        if isinstance(type_input, list) and len(spec) == 1:
            info = [type_input, {}]
        if isinstance(type_input, str) and type_input in CONVERT:
            try:
                value = CONVERT[type_input](value)
                self.prompt[unique_id]["inputs"][name] = value
            except (TypeError, ValueError, OverflowError) as exc:
                errors.append(
                    {
                        "type": "invalid_input_type",
                        "message": f"Failed to convert an input value to a {type_input} value",
                        "details": f"{name}, {value}, {exc}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": info,
                            "received_value": value,
                            "exception_message": str(exc),
                        },
                    }
                )
                return False
            if "min" in options and value < options["min"]:
                errors.append(
                    self._range(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {options['min']}",
                        name,
                        info,
                        value,
                    )
                )
                return False
            if "max" in options and value > options["max"]:
                errors.append(
                    self._range(
                        "value_bigger_than_max",
                        f"Value {value} bigger than max of {options['max']}",
                        name,
                        info,
                        value,
                    )
                )
                return False
        if isinstance(type_input, list) and not (node.name == "LoadImage" and name == "image"):
            if value not in type_input:
                listing = f"(list of length {len(type_input)})" if len(type_input) > 20 else repr(type_input)
                errors.append(
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": f"{name}: '{value}' not in {listing}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": None if len(type_input) > 20 else info,
                            "received_value": value,
                        },
                    }
                )
                return False
        return True

    @staticmethod
    def _range(type_: str, message: str, name: str, info: Any, value: Any) -> dict[str, Any]:
        return {
            "type": type_,
            "message": message,
            "details": name,
            "extra_info": {"input_name": name, "input_config": info, "received_value": value},
        }


def validate_prompt(
    prompt: Any, partial_targets: list[str] | None, lister: Lister, input_exists: FileExists
) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    if not isinstance(prompt, dict):
        prompt = {}
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            err = prompt_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
            return False, err, [], {}
        if node["class_type"] not in CATALOGUE:
            err = prompt_error(
                "invalid_prompt",
                f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{node_id}'",
            )
            return False, err, [], {}
        node.setdefault("inputs", {})
        if CATALOGUE[node["class_type"]].output_node and (
            partial_targets is None or node_id in partial_targets
        ):
            outputs.append(node_id)
    if not outputs:
        return False, prompt_error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}

    validator = Validator(prompt, lister, input_exists)
    good: list[str] = []
    failures: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for out in outputs:
        try:
            valid, reasons, _ = validator.node(out)
        except Exception as exc:
            valid = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(exc),
                    "extra_info": {
                        "exception_type": _full_type_name(exc),
                        "traceback": traceback.format_tb(exc.__traceback__),
                    },
                }
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
        err = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": details,
            "extra_info": {},
        }
        return False, err, [], node_errors
    return True, None, good, node_errors
