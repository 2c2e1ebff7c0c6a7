"""The built-in `product` template (issue 17) and the declaration's `role` and `bypass_when_absent`: an
optional image left empty bypasses the nodes it feeds, and the nodes only they needed are dropped."""

from __future__ import annotations

from typing import Any

import pytest

from contract.styles import load_manifest
from contract.templates import (
    DeclarationError,
    ImageRef,
    builtin_declarations,
    check_graph,
    check_inputs,
    content_sha256,
    fill,
    parse_declaration,
    validate,
)
from tests.contract.object_infos import CHECKPOINT, CONTROLNET, STYLE_IDS, WORKFLOWS, studio_object_info

MANIFEST = load_manifest()
DECLS = builtin_declarations(WORKFLOWS, checkpoint=CHECKPOINT, controlnet=CONTROLNET)
PRODUCT = DECLS["product"]
OBJECT_INFO = studio_object_info()
IMAGES = {
    "product": ImageRef("uploads/p.png", False),
    "composition": ImageRef("uploads/c.png"),
    "style_photo": ImageRef("uploads/s.png", False),
}
VALUES = {"product": "u-p", "composition": "u-c", "style_photo": "u-s", "prompt": "a loft", "seed": 7}
COMPOSITION_ONLY = {"40", "41", "42", "43", "44"}
STYLE_PHOTO_ONLY = {"50", "51", "52", "53"}


def filled(drop: tuple[str, ...] = (), **values: Any) -> dict[str, Any]:
    given = {k: v for k, v in {**VALUES, **values}.items() if k not in drop}
    images = {k: v for k, v in IMAGES.items() if k not in drop}
    return fill(PRODUCT, given, MANIFEST, images, "job-1", object_info=OBJECT_INFO)


def test_the_product_template_is_valid_on_a_host_with_the_packs_and_the_models() -> None:
    assert validate(PRODUCT, OBJECT_INFO, style_ids=STYLE_IDS) == []
    assert PRODUCT.graph["4"]["inputs"]["ckpt_name"] == CHECKPOINT
    assert "14" not in PRODUCT.graph  # the scribble ControlNet's node id: the setting must not land here


def test_its_inputs_and_outputs_are_as_declared() -> None:
    images = [(i.key, i.role, i.required, i.bypass_when_absent) for i in PRODUCT.inputs if i.kind == "image"]
    assert images == [
        ("product", "product", True, []),
        ("composition", "composition", False, ["44"]),
        ("style_photo", "style_photo", False, ["53"]),
    ]
    assert PRODUCT.input("product").constraints.min_width == 512
    assert PRODUCT.outputs.results == ["9"]
    assert [(p.node, p.label) for p in PRODUCT.outputs.passes] == [
        ("62", "Draft"),
        ("67", "Refine 1"),
        ("73", "Refine 2"),
    ]
    keys = {i.key for i in PRODUCT.inputs}
    assert {"prompt", "style", "depth_strength", "composition_strength", "style_strength", "seed"} <= keys


def test_with_every_image_the_whole_pipeline_runs() -> None:
    g = filled(style="indochine", depth_strength=1.1, composition_strength=0.3, style_strength=0.5)
    assert set(g) == set(PRODUCT.graph)
    images = [g[n]["inputs"]["image"] for n in ("20", "40", "50")]
    assert images == ["uploads/p.png", "uploads/c.png", "uploads/s.png"]
    strengths = (g["32"]["inputs"]["strength"], g["44"]["inputs"]["strength"], g["53"]["inputs"]["weight"])
    assert strengths == (1.1, 0.3, 0.5)
    # pass 1: inpaint the background only, both ControlNets, the IPAdapter model masked to the background
    assert g["60"]["inputs"]["mask"] == ["24", 0] and g["53"]["inputs"]["attn_mask"] == ["24", 0]
    assert g["3"]["inputs"]["model"] == ["53", 0] and g["3"]["inputs"]["positive"] == ["44", 0]
    assert g["3"]["inputs"]["denoise"] == 1.0
    # pass 2 re-encodes with the IPAdapter at 0.4, pass 3 with the plain (styled) model at 0.2
    assert (g["65"]["inputs"]["model"], g["65"]["inputs"]["denoise"]) == (["53", 0], 0.4)
    assert (g["70"]["inputs"]["model"], g["70"]["inputs"]["denoise"]) == (["10", 0], 0.2)
    assert [g[n]["inputs"]["seed"] for n in ("3", "65", "70")] == [7, 7, 7]
    # the product pasted back with its mask before the x4 upscale, which the result saves
    assert g["72"]["class_type"] == "ImageCompositeMasked"
    assert (g["72"]["inputs"]["source"], g["72"]["inputs"]["mask"]) == (["21", 0], ["25", 0])
    assert g["25"] == {"class_type": "InvertMask", "inputs": {"mask": ["24", 0]}}
    assert g["81"]["inputs"]["image"] == ["72", 0] and g["9"]["inputs"]["images"] == ["81", 0]
    assert g["73"]["inputs"]["images"] == ["72", 0]  # refine 2 is what the upscale reads
    assert {g[n]["inputs"]["filename_prefix"] for n in ("9", "62", "67", "73")} == {"studio/job-1"}
    assert g["10"]["inputs"]["lora_name"] == MANIFEST.get("indochine").lora_file


def test_no_composition_sketch_drops_the_canny_controlnet_and_what_fed_it() -> None:
    g = filled(drop=("composition",), style="minimalist")
    assert set(PRODUCT.graph) - set(g) == COMPOSITION_ONLY
    assert (g["3"]["inputs"]["positive"], g["3"]["inputs"]["negative"]) == (["32", 0], ["32", 1])
    assert (g["65"]["inputs"]["positive"], g["65"]["inputs"]["negative"]) == (["32", 0], ["32", 1])
    assert g["3"]["inputs"]["model"] == ["53", 0]


def test_no_style_photo_drops_the_ipadapter_and_its_loaders() -> None:
    g = filled(drop=("style_photo",), style="minimalist")
    assert set(PRODUCT.graph) - set(g) == STYLE_PHOTO_ONLY
    assert g["3"]["inputs"]["model"] == ["10", 0] and g["65"]["inputs"]["model"] == ["10", 0]


def test_neither_optional_image_and_no_lora_leaves_the_core_pipeline() -> None:
    g = filled(drop=("composition", "style_photo"), style="none")
    assert set(PRODUCT.graph) - set(g) == COMPOSITION_ONLY | STYLE_PHOTO_ONLY | {"10"}
    assert g["3"]["inputs"]["model"] == ["4", 0] and g["3"]["inputs"]["positive"] == ["32", 0]
    assert g["6"]["inputs"]["clip"] == ["4", 1]
    assert check_graph(g, OBJECT_INFO) == []  # what is left is a whole graph ComfyUI accepts


def _tiny(**image: Any) -> dict[str, Any]:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "c.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "room", "clip": ["1", 1]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
        "11": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "cn.safetensors"}},
        "4": {"class_type": "ControlNetApplyAdvanced",
              "inputs": {"positive": ["6", 0], "negative": ["6", 0], "control_net": ["11", 0],
                         "image": ["2", 0], "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "3": {"class_type": "KSampler",
              "inputs": {"model": ["1", 0], "seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "euler",
                         "scheduler": "normal", "positive": ["4", 0], "negative": ["4", 1],
                         "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }  # fmt: skip
    item = {"key": "overlay", "label": "Overlay", "kind": "image", "targets": [["2", "image"]], **image}
    return {"name": "tiny", "title": "Tiny", "graph": graph, "inputs": [item], "outputs": {"results": ["9"]}}


def test_bypass_when_absent_is_for_optional_image_inputs_only() -> None:
    with pytest.raises(DeclarationError, match="a required input is never absent"):
        parse_declaration(_tiny(bypass_when_absent=["4"], required=True))
    doc = _tiny()
    doc["inputs"] = [{"key": "n", "label": "N", "kind": "integer", "targets": [["4", "x"]],
                      "bypass_when_absent": ["3"]}]  # fmt: skip
    with pytest.raises(DeclarationError, match="bypass_when_absent is for an image input only"):
        parse_declaration(doc)
    with pytest.raises(DeclarationError, match="must not repeat"):
        parse_declaration(_tiny(bypass_when_absent=["4", "4"]))
    with pytest.raises(DeclarationError, match=r"inputs\.0\.role"):
        parse_declaration(_tiny(role="painting"))


def test_a_node_that_cannot_be_bypassed_is_a_problem_with_its_path() -> None:
    decl = parse_declaration(_tiny(bypass_when_absent=["9", "77", "4"]))
    found = [(p.code, p.path) for p in check_inputs(decl)]
    assert found == [
        ("not_bypassable", "inputs.0.bypass_when_absent.0"),  # SaveImage passes nothing through
        ("bypass_node_missing", "inputs.0.bypass_when_absent.1"),
    ]


def test_an_absent_image_bypasses_by_output_name_and_drops_only_what_lost_its_consumers() -> None:
    decl = parse_declaration(_tiny(bypass_when_absent=["4"]))
    g = fill(decl, {}, MANIFEST, {}, "j")
    assert set(decl.graph) - set(g) == {"4", "11"}  # the ControlNet apply and the loader only it used
    assert (g["3"]["inputs"]["positive"], g["3"]["inputs"]["negative"]) == (["6", 0], ["6", 0])
    assert g["2"]["inputs"]["image"] == "b.png"  # still read by the PreviewImage, an output: kept
    given = fill(decl, {"overlay": "u"}, MANIFEST, {"overlay": ImageRef("uploads/o.png")}, "j")
    assert set(given) == set(decl.graph) and given["2"]["inputs"]["image"] == "uploads/o.png"
    without_preview = _tiny(bypass_when_absent=["4"])
    del without_preview["graph"]["10"]
    g = fill(parse_declaration(without_preview), {}, MANIFEST, {}, "j")
    assert set(without_preview["graph"]) - set(g) == {"2", "4", "11"}


# The built-ins' content hashes before `role` and `bypass_when_absent` existed (main at issue 17's start):
# a deployment that upgrades publishes no new text or sketch version.
HASHES_BEFORE = {
    "text": "f5f980126c75fcadf9e87be03350ab6c421c15d6b56f484bd1e8d056027f0bc7",
    "sketch": "45086cd29c839d2a52a1a82217a99a74aaa4d30c5e4e3c17a0ab07a438d9588d",
}


def test_the_new_fields_leave_older_versions_hashes_as_they_were() -> None:
    for name, sha in HASHES_BEFORE.items():
        assert content_sha256(DECLS[name]) == sha
    assert [i.get("role") for i in PRODUCT.spec()["inputs"][:3]] == ["product", "composition", "style_photo"]
    assert PRODUCT.spec()["inputs"][1]["bypass_when_absent"] == ["44"]
