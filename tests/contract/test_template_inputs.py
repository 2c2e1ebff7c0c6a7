"""Declared inputs against the graph and /object_info (one test per failure, exact messages); effective
constraints; the generated input model (strict, unknown keys refused, errors located by key)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contract.templates import (
    builtin_declarations,
    check_inputs,
    declaration_needs,
    effective_constraints,
    input_model,
    parse_declaration,
    validate,
    validate_values,
)
from tests.contract.object_infos import CHECKPOINT, CONTROLNET, STYLE_IDS, WORKFLOWS, core_object_info

OBJECT_INFO = core_object_info()
BUILTINS = builtin_declarations(WORKFLOWS, checkpoint=CHECKPOINT, controlnet=CONTROLNET)


def text_doc(*inputs: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = BUILTINS["text"].model_dump(exclude_unset=True)
    return {**doc, "name": "custom", "inputs": list(inputs), **changes}


def item(
    key: str = "x", kind: str = "integer", targets: Any = (("3", "steps"),), **changes: Any
) -> dict[str, Any]:
    return {"key": key, "label": key.title(), "kind": kind, "targets": [list(t) for t in targets], **changes}


def problems(
    *inputs: dict[str, Any], object_info: Any = OBJECT_INFO, **changes: Any
) -> list[tuple[str, str, str]]:
    decl = parse_declaration(text_doc(*inputs, **changes))
    return [(p.code, p.path, p.message) for p in check_inputs(decl, object_info, STYLE_IDS)]


def a(word: str) -> str:
    return ("an " if word[0] in "iIe" else "a ") + word


def test_the_builtins_inputs_pass() -> None:
    for decl in BUILTINS.values():
        assert check_inputs(decl, OBJECT_INFO, STYLE_IDS) == []
        assert check_inputs(decl) == []


def test_a_target_node_missing() -> None:
    assert problems(item(targets=[("77", "steps")])) == [
        ("target_missing_node", "inputs.0.targets.0", "input x targets node 77, which is not in the graph")
    ]


def test_a_target_that_is_no_input_of_the_class() -> None:
    assert problems(item(targets=[("3", "stepz")])) == [
        (
            "target_not_an_input",
            "inputs.0.targets.0",
            "node 3 (KSampler), input stepz: input x: the class has no such input",
        )
    ]
    assert problems(item(targets=[("3", "stepz")]), object_info=None) == [
        (
            "target_not_an_input",
            "inputs.0.targets.0",
            "node 3 (KSampler), input stepz: input x: the node has no such input",
        )
    ]


def test_a_target_that_is_a_link() -> None:
    assert problems(item(kind="short_text", targets=[("3", "model")])) == [
        (
            "target_is_link",
            "inputs.0.targets.0",
            "node 3 (KSampler), input model: input x: is linked from another node; a declared input "
            "replaces a "
            "value, not a link",
        )
    ]


def test_two_inputs_on_one_target() -> None:
    assert problems(item("a"), item("b")) == [
        (
            "target_taken",
            "inputs.1.targets.0",
            "node 3 (KSampler), input steps: filled by both inputs a and b",
        )
    ]


@pytest.mark.parametrize(
    ("kind", "target", "shown"),
    [
        ("number", ("3", "steps"), "INT"),
        ("integer", ("3", "cfg"), "FLOAT"),
        ("short_text", ("3", "steps"), "INT"),
        ("choice", ("6", "text"), "STRING"),
        ("image", ("3", "sampler_name"), "COMBO"),
        ("model", ("3", "sampler_name"), "COMBO"),
        ("seed", ("3", "cfg"), "FLOAT"),
    ],
)
def test_a_kind_that_does_not_fit_the_inputs_type(kind: str, target: tuple[str, str], shown: str) -> None:
    node, name = target
    class_type = BUILTINS["text"].graph[node]["class_type"]
    assert problems(item(kind=kind, targets=[target])) == [
        (
            "kind_mismatch",
            "inputs.0.targets.0",
            f"node {node} ({class_type}), input {name}: input x: {a(kind)} input cannot fill "
            f"{a(shown)} input",
        )
    ]


def test_constraints_wider_than_the_spec() -> None:
    assert problems(item(constraints={"min": 0, "max": 20000, "step": 3}, targets=[("5", "width")])) == [
        (
            "constraint_wider",
            "inputs.0.constraints.min",
            "node 5 (EmptyLatentImage), input width: input x: min 0 is below the input's min 16 "
            "(constraints only narrow)",
        ),
        (
            "constraint_wider",
            "inputs.0.constraints.max",
            "node 5 (EmptyLatentImage), input width: input x: max 20000 is above the input's max "
            "16384 (constraints only narrow)",
        ),
        (
            "constraint_wider",
            "inputs.0.constraints.step",
            "node 5 (EmptyLatentImage), input width: input x: step 3 is not a multiple of the input's step 8",
        ),
    ]


def test_a_choice_the_spec_does_not_offer() -> None:
    choice = item(
        kind="choice", targets=[("3", "sampler_name")], constraints={"choices": ["euler", "warp_drive"]}
    )
    assert problems(choice) == [
        (
            "choice_not_offered",
            "inputs.0.constraints.choices",
            "node 3 (KSampler), input sampler_name: input x: choice(s) warp_drive not offered by the input",
        )
    ]


def test_a_model_file_missing_on_an_instance_names_it() -> None:
    model = item(kind="model", targets=[("4", "ckpt_name")], constraints={"choices": ["gone.safetensors"]})
    decl = parse_declaration(text_doc(model))
    (problem,) = check_inputs(decl, OBJECT_INFO, instance="gpu-2:8188")
    assert problem.message == (
        "node 4 (CheckpointLoaderSimple), input ckpt_name: input x: choice(s) gone.safetensors not "
        "offered by the "
        "input (on gpu-2:8188)"
    )
    assert problem.instance == "gpu-2:8188"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"default": 0}, "input x: default 0: Input should be greater than or equal to 1"),
        (
            {"default": 7, "constraints": {"max": 5}},
            "input x: default 7: Input should be less than or equal to 5",
        ),
        ({"default": "many"}, "input x: default 'many': Input should be a valid integer"),
        (
            {"default": 30, "constraints": {"min": 16, "step": 8}},
            "input x: default 30: must be a multiple of 8 (got 30; try 32)",
        ),
    ],
)
def test_a_default_outside_the_effective_constraints(changes: dict[str, Any], message: str) -> None:
    assert problems(item(**changes)) == [("bad_default", "inputs.0.default", message)]


def test_a_required_input_may_have_a_valid_default() -> None:
    assert problems(item(required=True, default=20)) == []


def test_an_input_without_targets() -> None:
    assert problems(item(targets=[])) == [
        ("no_targets", "inputs.0.targets", "input x: names no target (node id, input name)")
    ]


def test_style_blocks_name_fillable_nodes() -> None:
    style = item(
        "style",
        "style",
        targets=[],
        style={"lora_node": "3", "positive": ["3", "model"], "strength_input": "nope"},
    )
    assert problems(style) == [
        (
            "style_lora_node",
            "inputs.0.style.lora_node",
            "node 3 (KSampler): input style: the style's lora_node must be a LoraLoader or "
            "LoraLoaderModelOnly",
        ),
        (
            "style_prompt",
            "inputs.0.style.positive",
            "node 3 (KSampler), input model: input style: the style's positive prompt must be a text "
            "value in the graph",
        ),
        (
            "style_strength_input",
            "inputs.0.style.strength_input",
            "input style: strength_input nope is not a number input of this template",
        ),
    ]


def test_style_choices_and_default_must_be_styles() -> None:
    style = item("style", "style", targets=[], style={}, constraints={"choices": ["none", "baroque"]})
    assert problems(style) == [
        (
            "choice_not_offered",
            "inputs.0.constraints.choices",
            "input style: unknown style(s) baroque (styles: indochine, minimalist, none)",
        )
    ]
    assert problems(item("style", "style", targets=[], style={}, default="gothic")) == [
        (
            "bad_default",
            "inputs.0.default",
            "input style: default 'gothic': Input should be 'indochine', 'minimalist' or 'none'",
        )
    ]


def test_a_line_art_node_that_cannot_be_bypassed() -> None:
    doc = BUILTINS["sketch"].model_dump(exclude_unset=True)
    doc["inputs"] = [item("sketch", "image", targets=[("11", "image")], line_art={"invert_node": "13"})]
    decl = parse_declaration({**doc, "name": "custom"})
    assert [p.message for p in check_inputs(decl, OBJECT_INFO)] == []  # ImageScale passes its image through
    doc["inputs"] = [item("sketch", "image", targets=[("11", "image")], line_art={"invert_node": "14"})]
    decl = parse_declaration({**doc, "name": "custom"})
    assert [p.message for p in check_inputs(decl, OBJECT_INFO)] == [
        "node 14 (ControlNetLoader): input sketch: cannot be bypassed: output 0 (CONTROL_NET) is "
        "used and the "
        "node has no input control_net to pass through"
    ]


def test_outputs_name_saving_nodes() -> None:
    outputs = {"results": ["3"], "passes": [{"node": "99", "label": "Draft"}]}
    assert problems(outputs=outputs) == [
        (
            "output_not_saving",
            "outputs.results.0",
            "node 3 (KSampler): is not an output node (it saves no image)",
        ),
        ("output_missing_node", "outputs.passes.0.node", "output node 99 is not in the graph"),
    ]


def test_effective_constraints_are_spec_and_narrowing() -> None:
    c = effective_constraints(BUILTINS["sketch"], OBJECT_INFO, STYLE_IDS)
    assert c["width"] == {"min": 256, "max": 1024, "step": 8}
    assert c["cfg"] == {"min": 1.0, "max": 20.0, "step": 0.1}
    assert c["seed"] == {"min": 0, "max": 2**53 - 1}
    assert c["style"] == {"choices": STYLE_IDS}
    assert c["prompt"] == {"max_length": 2000, "multiline": True}
    assert c["sampler"]["choices"][:3] == ["euler", "euler_ancestral", "heun"]
    open_ = parse_declaration(
        text_doc(item(targets=[("5", "width")]), item("s", "seed", targets=[("3", "seed")]))
    )
    assert effective_constraints(open_, OBJECT_INFO) == {
        "x": {"min": 16, "max": 16384, "step": 8},
        "s": {"min": 0, "max": 2**64 - 1},
    }
    assert effective_constraints(open_) == {"x": {}, "s": {"min": 0, "max": 2**64 - 1}}


def model_of(kind: str = "text") -> Any:
    return input_model(BUILTINS[kind], OBJECT_INFO, style_ids=STYLE_IDS)


def locations(values: dict[str, Any], kind: str = "text") -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model_of(kind).model_validate(values)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


def test_the_input_model_fills_defaults_by_key() -> None:
    values = validate_values(model_of(), {"prompt": "  a room  ", "width": 512.0})
    assert values == {
        "prompt": "a room",
        "negative_prompt": "",
        "style": "none",
        "width": 512,
        "height": 512,
        "steps": 25,
        "cfg": 7.0,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "seed": None,
        "num_images": 1,
        "lora_strength": None,
    }


def test_the_input_model_refuses_unknown_keys_and_values_outside_narrowed_constraints() -> None:
    assert locations({"prompt": "x", "kind": "text", "width": 1032, "height": 500, "steps": "5"}) == [
        ("width", "Input should be less than or equal to 1024"),
        ("height", "Value error, must be a multiple of 8 (got 500; try 496)"),
        ("steps", "Input should be a valid integer"),
        ("kind", "Extra inputs are not permitted"),
    ]
    assert locations({"prompt": " ", "style": "baroque", "sampler": "warp", "seed": -1, "cfg": True}) == [
        ("prompt", "Value error, must not be empty or only spaces"),
        ("style", "Input should be 'indochine', 'minimalist' or 'none'"),
        ("cfg", "Input should be a valid number"),
        (
            "sampler",
            "Input should be 'euler', 'euler_ancestral', 'heun', 'dpm_2', 'dpm_2_ancestral', 'lms', "
            "'dpmpp_2s_ancestral', 'dpmpp_sde', 'dpmpp_2m', 'dpmpp_2m_sde', 'dpmpp_3m_sde', 'ddim', "
            "'uni_pc' or 'lcm'",
        ),
        ("seed", "Input should be greater than or equal to 0"),
    ]


def test_the_input_model_requires_and_checks_the_sketch_upload() -> None:
    assert locations({"prompt": "x"}, "sketch") == [("upload_id", "Field required")]
    assert locations({"prompt": "x", "upload_id": "../etc/passwd"}, "sketch")[0][0] == "upload_id"


def test_text_inputs_refuse_control_characters_and_keep_markup() -> None:
    assert locations({"prompt": "a\x00room"}) == [
        ("prompt", "Value error, must not contain control characters")
    ]
    values = validate_values(model_of(), {"prompt": "<b>loft</b>\nwith a view"})
    assert values["prompt"] == "<b>loft</b>\nwith a view"


def test_a_key_that_shadows_a_pydantic_name_works() -> None:
    decl = parse_declaration(text_doc(item("model_config"), item("copy", targets=[("5", "width")])))
    assert validate_values(input_model(decl), {"model_config": 3, "copy": 8}) == {
        "model_config": 3,
        "copy": 8,
    }


def test_a_model_input_offers_the_files_on_the_instance_and_needs_them_all() -> None:
    model = item(
        "checkpoint",
        "model",
        targets=[("4", "ckpt_name")],
        constraints={"choices": ["other.safetensors", CHECKPOINT]},
        default=CHECKPOINT,
    )
    decl = parse_declaration(text_doc(model))
    assert check_inputs(decl, OBJECT_INFO) == []
    assert effective_constraints(decl, OBJECT_INFO)["checkpoint"] == {
        "choices": ["other.safetensors", CHECKPOINT]
    }
    assert locations_of(decl, {"checkpoint": "evil.ckpt"}) == [
        ("checkpoint", f"Input should be 'other.safetensors' or '{CHECKPOINT}'")
    ]
    assert declaration_needs(decl, OBJECT_INFO).models["checkpoints"] == (CHECKPOINT, "other.safetensors")


def test_an_image_input_needs_an_upload_input_and_carries_its_size_limits() -> None:
    doc = BUILTINS["sketch"].model_dump(exclude_unset=True)
    image = item(
        "room", "image", targets=[("11", "image")], constraints={"min_width": 256, "min_height": 128}
    )
    decl = parse_declaration({**doc, "name": "custom", "inputs": [image]})
    assert check_inputs(decl, OBJECT_INFO) == []
    assert effective_constraints(decl, OBJECT_INFO)["room"] == {"min_width": 256, "min_height": 128}


def test_validate_refuses_a_ui_workflow_once() -> None:
    ui = {"last_node_id": 1, "nodes": [{"id": 1}], "links": []}
    decl = parse_declaration(text_doc(graph=ui, outputs={"results": ["9"]}))
    assert [p.code for p in validate(decl, OBJECT_INFO)] == ["ui_format"]


def locations_of(decl: Any, values: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        input_model(decl, OBJECT_INFO).model_validate(values)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]
