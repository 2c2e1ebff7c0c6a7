"""contract.comfy_spec: ComfyUI 0.3.64's reading of /object_info input specs and its literal validation."""

from __future__ import annotations

import math

import pytest

from contract.comfy_spec import (
    InputSpec,
    check_link,
    declared_inputs,
    input_spec,
    is_output_node,
    output_types,
    required_input_missing,
    types_match,
    validate_literal,
)

KSAMPLER = {
    "input": {
        "required": {
            "model": ["MODEL", {"tooltip": "The model"}],
            "seed": ["INT", {"default": 0, "min": 0, "max": 18446744073709551615}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [["euler", "heun"], {"tooltip": "sampler"}],
            "scheduler": [["simple", "karras"]],
            "latent_image": ["LATENT"],
        },
        "optional": {"denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}]},
        "hidden": {"prompt": "PROMPT"},
    },
    "output": ["LATENT"],
    "output_node": False,
}
UPSCALER = {
    "input": {
        "required": {
            "model_name": ["COMBO", {"multiselect": False, "options": ["4x.pth", "2x.pth"]}],
            "enabled": ["BOOLEAN", {"default": True}],
            "label": ["STRING", {"multiline": True}],
        }
    },
    "output": ["UPSCALE_MODEL"],
    "output_node": True,
}


def spec(name: str, info=KSAMPLER) -> InputSpec:
    found = input_spec(info, name)
    assert found is not None
    return found


def test_input_specs_are_read_as_comfyui_declares_them() -> None:
    assert spec("seed") == InputSpec(
        "seed", "required", "INT", {"default": 0, "min": 0, "max": 18446744073709551615}
    )
    assert spec("denoise").category == "optional"
    assert input_spec(KSAMPLER, "prompt") is None  # hidden inputs are the server's, never validated
    assert input_spec(KSAMPLER, "nope") is None
    assert spec("scheduler").config == [["simple", "karras"], {}]
    assert spec("model").config == ["MODEL", {"tooltip": "The model"}]
    assert spec("latent_image").config == ["LATENT", {}]
    assert spec("sampler_name").choices == ["euler", "heun"] and spec("sampler_name").is_combo
    assert (
        spec("model_name", UPSCALER).choices == ["4x.pth", "2x.pth"] and spec("model_name", UPSCALER).is_combo
    )
    assert spec("model").choices is None and not spec("model").is_widget and spec("cfg").is_widget
    assert list(declared_inputs(KSAMPLER)) == [*KSAMPLER["input"]["required"], "denoise"]
    assert output_types(KSAMPLER) == ("LATENT",) and not is_output_node(KSAMPLER) and is_output_node(UPSCALER)
    with pytest.raises(ValueError, match="bad"):
        input_spec({"input": {"required": {"bad": "INT"}}}, "bad")


def test_ints_and_floats_are_converted_then_bounded() -> None:
    assert validate_literal(spec("seed"), "64") == (True, 64, [])
    assert validate_literal(spec("seed"), 64.7) == (True, 64, [])
    assert validate_literal(spec("cfg"), 7) == (True, 7.0, [])
    assert validate_literal(spec("cfg"), 7.123456) == (True, 7.123456, [])  # round: not the server's check
    ok, value, (err,) = validate_literal(spec("seed"), -1)
    assert not ok and value == -1
    assert err == {
        "type": "value_smaller_than_min",
        "message": "Value -1 smaller than min of 0",
        "details": "seed",
        "extra_info": {"input_name": "seed", "input_config": spec("seed").config, "received_value": -1},
    }
    _, _, (err,) = validate_literal(spec("cfg"), 100.5)
    assert err["type"] == "value_bigger_than_max" and err["message"] == "Value 100.5 bigger than max of 100.0"
    ok, value, (err,) = validate_literal(spec("cfg"), "high")
    assert not ok and value == "high"
    assert err == {
        "type": "invalid_input_type",
        "message": "Failed to convert an input value to a FLOAT value",
        "details": "cfg, high, could not convert string to float: 'high'",
        "extra_info": {
            "input_name": "cfg",
            "input_config": spec("cfg").config,
            "received_value": "high",
            "exception_message": "could not convert string to float: 'high'",
        },
    }
    _, _, (err,) = validate_literal(spec("seed"), None)
    assert err["type"] == "invalid_input_type" and "NoneType" in err["details"]
    ok, value, _ = validate_literal(spec("cfg"), "nan")  # NaN passes both bounds, as in the server
    assert ok and math.isnan(value)


def test_strings_booleans_and_wrapped_values() -> None:
    assert validate_literal(spec("enabled", UPSCALER), "false") == (True, True, [])  # bool("false")
    assert validate_literal(spec("enabled", UPSCALER), 0) == (True, False, [])
    assert validate_literal(spec("label", UPSCALER), 12) == (True, "12", [])
    assert validate_literal(spec("seed"), {"__value__": "5"}) == (True, 5, [])


def test_classic_combos_are_checked_and_schema_combos_only_on_request() -> None:
    assert validate_literal(spec("sampler_name"), "heun") == (True, "heun", [])
    ok, _, (err,) = validate_literal(spec("scheduler"), "fast")
    assert not ok and err == {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": "scheduler: 'fast' not in ['simple', 'karras']",
        "extra_info": {
            "input_name": "scheduler",
            "input_config": [["simple", "karras"], {}],
            "received_value": "fast",
        },
    }
    many = InputSpec("ckpt", "required", [f"m{n}" for n in range(21)], {})
    _, _, (err,) = validate_literal(many, "x")
    assert (
        err["details"] == "ckpt: 'x' not in (list of length 21)" and err["extra_info"]["input_config"] is None
    )
    # 0.3.64 does not check a "COMBO" spec's options: a missing upscale model fails only at execution.
    assert validate_literal(spec("model_name", UPSCALER), "8x.pth") == (True, "8x.pth", [])
    _, _, (err,) = validate_literal(spec("model_name", UPSCALER), "8x.pth", check_schema_combo=True)
    assert err["type"] == "value_not_in_list"
    assert validate_literal(spec("scheduler"), "fast", custom_validated=True) == (True, "fast", [])


def test_link_types_match_as_validate_node_input() -> None:
    assert types_match("IMAGE", "IMAGE")
    assert not types_match("LATENT", "IMAGE")
    assert types_match("IMAGE,MASK", "MASK") and types_match("MASK", "IMAGE, MASK")
    assert types_match("*", "MODEL") and types_match("MODEL", "*") and types_match("*", ["a", "b"])
    assert not types_match("STRING", ["a", "b"]) and types_match(["a", "b"], ["a", "b"])
    assert check_link(spec("latent_image"), ["5", 0], "LATENT") == []
    (err,) = check_link(spec("latent_image"), ["5", 0], "IMAGE")
    assert err == {
        "type": "return_type_mismatch",
        "message": "Return type mismatch between linked nodes",
        "details": "latent_image, received_type(IMAGE) mismatch input_type(LATENT)",
        "extra_info": {
            "input_name": "latent_image",
            "input_config": ["LATENT", {}],
            "received_type": "IMAGE",
            "linked_node": ["5", 0],
        },
    }
    (err,) = check_link(spec("latent_image"), ["5", 0, 1], None)
    assert err["type"] == "bad_linked_input" and err["extra_info"]["received_value"] == ["5", 0, 1]
    assert required_input_missing("steps") == {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": "steps",
        "extra_info": {"input_name": "steps"},
    }
