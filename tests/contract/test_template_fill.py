"""fill: the built-in templates give today's graphs; values, images, styles and bypasses land where
declared; needs, lanes and content hashes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from contract.graphs import GraphInputs, build_graph
from contract.styles import load_manifest
from contract.templates import (
    FillError,
    ImageRef,
    builtin_declarations,
    bypass,
    content_sha256,
    declaration_needs,
    fill,
    input_model,
    lane_of,
    needs,
    parse_declaration,
    validate,
    validate_values,
)
from tests.contract.object_infos import (
    CHECKPOINT,
    CONTROLNET,
    STYLE_IDS,
    WORKFLOWS,
    core_object_info,
    photo_object_info,
)

MANIFEST = load_manifest()
BUILTINS = builtin_declarations(WORKFLOWS, checkpoint="ckpt.safetensors", controlnet="cn.safetensors")
UPLOAD = "12345678-1234-1234-1234-123456789abc"


def legacy_params(kind: str, **changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "prompt": "sunlit living room",
        "negative_prompt": "clutter",
        "style": "indochine",
        "width": 768,
        "height": 512,
        "steps": 20,
        "cfg": 6.5,
        "sampler": "euler",
        "scheduler": "normal",
        "num_images": 2,
        "lora_strength": None,
        "seed": 42,
    }
    if kind == "sketch":
        params.update(upload_id=UPLOAD, sketch_strength=0.7)
    return {**params, **changes}


def today(kind: str, params: dict[str, Any], dark_lines: bool) -> dict[str, Any]:
    inputs = GraphInputs(
        kind, params, params["seed"], "job-1", "sketches/abc.png", sketch_dark_lines=dark_lines
    )
    return build_graph(
        inputs, MANIFEST, WORKFLOWS, checkpoint="ckpt.safetensors", controlnet="cn.safetensors"
    )


def filled(kind: str, params: dict[str, Any], dark_lines: bool = True) -> dict[str, Any]:
    values = {k: v for k, v in params.items() if k in {i.key for i in BUILTINS[kind].inputs}}
    images = {"upload_id": ImageRef("uploads/abc.png", dark_lines)} if kind == "sketch" else {}
    return fill(BUILTINS[kind], values, MANIFEST, images, "job-1")


CASES = [
    (kind, style, strength, dark, negative, size)
    for kind, style, strength, dark, negative, size in itertools.product(
        ["text", "sketch"],
        MANIFEST.ids,
        [None, 1.2, 0.0],
        [True, False],
        ["clutter", ""],
        [(768, 512), (256, 1024)],
    )
    if kind == "sketch" or dark
]


@pytest.mark.parametrize(("kind", "style", "strength", "dark", "negative", "size"), CASES)
def test_a_builtin_template_fills_todays_graph(kind, style, strength, dark, negative, size) -> None:
    params = legacy_params(
        kind, style=style, lora_strength=strength, negative_prompt=negative, width=size[0], height=size[1]
    )
    expected, got = today(kind, params, dark), filled(kind, params, dark)
    assert got["9"]["inputs"].pop("filename_prefix") == "studio/job-1"
    expected["9"]["inputs"].pop("filename_prefix")
    if kind == "sketch":
        assert got["11"]["inputs"]["image"] == "uploads/abc.png"
        assert expected["11"]["inputs"].pop("image") == "sketches/abc.png"
        got["11"]["inputs"].pop("image")
    assert got == expected
    through_build_graph = build_graph(
        GraphInputs(kind, params, params["seed"], "job-1", "sketches/abc.png", sketch_dark_lines=dark),
        MANIFEST,
        WORKFLOWS,
        checkpoint="ckpt.safetensors",
        controlnet="cn.safetensors",
    )
    assert through_build_graph == today(kind, params, dark)


def test_builtin_values_validated_by_the_generated_model_fill_todays_graph() -> None:
    model = input_model(BUILTINS["text"], core_object_info(), style_ids=STYLE_IDS)
    values = validate_values(model, {"prompt": " sunlit living room ", "style": "minimalist", "seed": 42})
    params = legacy_params("text", **{**values, "seed": 42})
    expected, got = today("text", params, True), fill(BUILTINS["text"], params, MANIFEST, {}, "job-1")
    expected["9"]["inputs"]["filename_prefix"] = "studio/job-1"
    assert got == expected


def test_the_builtins_are_valid_on_the_core_object_info() -> None:
    decls = builtin_declarations(WORKFLOWS, checkpoint=CHECKPOINT, controlnet=CONTROLNET)
    for name in ("text", "sketch"):
        assert validate(decls[name], core_object_info(), style_ids=STYLE_IDS) == []
    for name in ("restyle", "stage", "edit"):  # node packs and the recorded mask nodes
        assert validate(decls[name], photo_object_info(), style_ids=STYLE_IDS) == [], name


def test_builtin_declarations_write_the_deployments_model_files() -> None:
    decls = builtin_declarations(WORKFLOWS, checkpoint=CHECKPOINT, controlnet=CONTROLNET)
    assert decls["text"].graph["4"]["inputs"]["ckpt_name"] == CHECKPOINT
    assert decls["sketch"].graph["14"]["inputs"]["control_net_name"] == CONTROLNET
    assert [i.key for i in decls["sketch"].inputs][-2:] == ["upload_id", "sketch_strength"]
    assert decls["text"].outputs.results == ["9"]


def test_fill_does_not_touch_the_declaration() -> None:
    before = BUILTINS["sketch"].model_dump()
    filled("sketch", legacy_params("sketch", style="none"), dark_lines=False)
    assert BUILTINS["sketch"].model_dump() == before


def test_an_unknown_style_or_a_missing_image_is_a_fill_error() -> None:
    with pytest.raises(FillError, match="unknown style 'baroque'"):
        filled("text", legacy_params("text", style="baroque"))
    with pytest.raises(FillError, match="input upload_id: an image is required"):
        fill(BUILTINS["sketch"], legacy_params("sketch", upload_id=None), MANIFEST, {}, "j")


def test_an_optional_value_not_given_keeps_the_graphs_value() -> None:
    graph = fill(BUILTINS["text"], {"prompt": "x", "style": "none"}, MANIFEST, {}, "j")
    assert graph["3"]["inputs"]["seed"] == BUILTINS["text"].graph["3"]["inputs"]["seed"]
    assert graph["3"]["inputs"]["steps"] == 25  # the declared default


def test_every_saving_node_gets_the_jobs_prefix_and_meta_is_stripped() -> None:
    doc = BUILTINS["text"].model_dump()
    doc["graph"]["20"] = {"class_type": "SaveImage", "_meta": {"title": "t"}, "inputs": {"images": ["8", 0]}}
    doc["outputs"] = {"results": ["9"], "passes": [{"node": "20", "label": "Draft"}]}
    graph = fill(parse_declaration(doc), {"prompt": "x"}, MANIFEST, {}, "job-7")
    assert (
        graph["20"]["inputs"]["filename_prefix"] == graph["9"]["inputs"]["filename_prefix"] == "studio/job-7"
    )
    assert all("_meta" not in node for node in graph.values())


def test_a_lora_model_only_node_gets_the_style_and_one_strength() -> None:
    doc = BUILTINS["text"].model_dump()
    doc["graph"]["10"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["4", 0], "lora_name": "x.safetensors", "strength_model": 1.0},
    }
    doc["graph"]["6"]["inputs"]["clip"] = doc["graph"]["7"]["inputs"]["clip"] = ["4", 1]
    doc["graph"]["4"]["inputs"]["ckpt_name"] = CHECKPOINT
    decl = parse_declaration(doc)
    assert validate(decl, core_object_info(), style_ids=STYLE_IDS) == []
    graph = fill(decl, {"prompt": "x", "style": "indochine", "lora_strength": 0.5}, MANIFEST, {}, "j")
    assert graph["10"]["inputs"] == {
        "model": ["4", 0],
        "lora_name": "indochine_v1.safetensors",
        "strength_model": 0.5,
    }
    graph = fill(decl, {"prompt": "x", "style": "none"}, MANIFEST, {}, "j")
    assert "10" not in graph and graph["3"]["inputs"]["model"] == ["4", 0]


def test_a_bypass_follows_the_output_types_of_object_info() -> None:
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {
            "class_type": "ImageScaleByPack",
            "inputs": {"image": ["1", 0], "upscale_method": "area", "scale_by": 2.0},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    bypass(graph, "2", core_object_info())
    assert graph["3"]["inputs"]["images"] == ["1", 0] and "2" not in graph
    with pytest.raises(ValueError, match="outputs of class ImageScaleByPack are unknown"):
        bypass({**graph, "2": {"class_type": "ImageScaleByPack", "inputs": {}}}, "2")


def test_needs_list_classes_and_model_files_by_folder() -> None:
    decl = builtin_declarations(WORKFLOWS, checkpoint=CHECKPOINT, controlnet=CONTROLNET)["sketch"]
    found = declaration_needs(decl, core_object_info(), style_loras=MANIFEST.lora_files)
    assert found.to_json() == {
        "nodes": sorted({n["class_type"] for n in decl.graph.values()}),
        "models": {
            "checkpoints": [CHECKPOINT],
            "controlnet": [CONTROLNET],
            "loras": ["indochine_v1.safetensors", "minimalist_v1.safetensors"],
        },
    }
    plain = needs(decl.graph)
    assert plain.models["loras"] == (decl.graph["10"]["inputs"]["lora_name"],)  # the example, as written


def test_an_unknown_loaders_model_file_takes_its_folder_from_the_callback() -> None:
    graph = {
        "1": {"class_type": "UpscaleModelLoaderPack", "inputs": {"model_name": "4x-UltraSharp.pth"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "3": {
            "class_type": "SaveImagePack",
            "inputs": {"note": "hello.pth is not a combo", "filename_prefix": "p"},
        },
    }
    folders = {"4x-UltraSharp.pth": "upscale_models"}
    found = needs(graph, core_object_info(), folders.get)
    assert found.models == {"upscale_models": ("4x-UltraSharp.pth",)} and found.unplaced == ()
    assert needs(graph, core_object_info(), lambda f: None).unplaced == ("4x-UltraSharp.pth",)


def test_lanes_depend_on_the_needs_only() -> None:
    a = needs({"1": {"class_type": "A", "inputs": {}}, "2": {"class_type": "B", "inputs": {"x": ["1", 0]}}})
    b = needs({"9": {"class_type": "B", "inputs": {}}, "8": {"class_type": "A", "inputs": {}}})
    c = needs({"9": {"class_type": "C", "inputs": {}}})
    assert lane_of(a) == lane_of(b) != lane_of(c)
    assert lane_of(a).startswith("n:") and len(lane_of(a)) == 18
    assert a.covered_by(["A", "B"], {}) == [] and a.covered_by(["A"], {}) == ["class B"]


def test_content_sha256_ignores_title_and_equivalent_spellings() -> None:
    doc = BUILTINS["text"].model_dump(exclude_unset=True)
    same = {**doc, "title": "Another title", "description": "other"}
    changed = {
        **doc,
        "outputs": {"results": ["9"], "passes": []},
        "graph": {**doc["graph"], "99": {"class_type": "X", "inputs": {}}},
    }
    assert content_sha256(parse_declaration(doc)) == content_sha256(parse_declaration(same))
    assert content_sha256(parse_declaration(doc)) != content_sha256(parse_declaration(changed))
