"""Graph building from contract/workflows/*.json and the style manifest (README's table checked too)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contract.graphs import WORKFLOWS_DIR, GraphError, GraphInputs, build_graph, load_workflow, warmup_graph
from contract.styles import load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "contract" / "workflows"
MANIFEST = load_manifest()
PARAMS = {
    "kind": "text",
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
    "sketch_strength": 0.7,
}


def graph(kind: str = "text", **params) -> dict:
    p = {**PARAMS, "kind": kind, **params}
    inputs = GraphInputs(
        kind, p, seed=42, job_id="job-1", sketch_name="sketches/abc.png" if kind == "sketch" else None
    )
    return build_graph(
        inputs, MANIFEST, WORKFLOWS, checkpoint="ckpt.safetensors", controlnet="cn.safetensors"
    )


def links(g: dict) -> list[list]:
    return [v for node in g.values() for v in node["inputs"].values() if isinstance(v, list)]


def test_text_graph_fills_every_value_from_the_job_and_the_style() -> None:
    g = graph()
    assert g["4"]["inputs"]["ckpt_name"] == "ckpt.safetensors"
    assert g["10"]["inputs"] == {
        "model": ["4", 0],
        "clip": ["4", 1],
        "lora_name": "indochine_v1.safetensors",
        "strength_model": 0.8,
        "strength_clip": 0.8,
    }
    assert g["6"]["inputs"]["text"].startswith("indochine style, sunlit living room")
    assert g["7"]["inputs"]["text"].startswith("clutter")
    assert g["5"]["inputs"] == {"width": 768, "height": 512, "batch_size": 2}
    k = g["3"]["inputs"]
    assert (k["seed"], k["steps"], k["cfg"], k["sampler_name"], k["scheduler"]) == (
        42,
        20,
        6.5,
        "euler",
        "normal",
    )
    assert g["9"]["inputs"]["filename_prefix"] == "renders/job-1"
    assert all("_meta" not in node for node in g.values())


def test_style_none_bypasses_the_lora_and_repoints_its_links() -> None:
    g = graph(style="none")
    assert "10" not in g
    assert g["3"]["inputs"]["model"] == ["4", 0]
    assert g["6"]["inputs"]["clip"] == ["4", 1] and g["7"]["inputs"]["clip"] == ["4", 1]
    assert all(link[0] in g for link in links(g))


def test_lora_strength_override() -> None:
    g = graph(lora_strength=1.2)
    assert g["10"]["inputs"]["strength_model"] == 1.2 == g["10"]["inputs"]["strength_clip"]


def test_sketch_graph_uses_the_upload_the_size_and_the_strength() -> None:
    g = graph("sketch")
    assert g["11"]["inputs"]["image"] == "sketches/abc.png"
    assert g["12"]["inputs"]["image"] == ["11", 0]
    assert g["13"]["inputs"]["width"] == 768 and g["13"]["inputs"]["height"] == 512
    assert g["14"]["inputs"]["control_net_name"] == "cn.safetensors"
    assert g["15"]["inputs"]["strength"] == 0.7
    assert g["9"]["inputs"]["filename_prefix"] == "sketch/job-1"


def test_light_lines_on_black_skip_the_invert() -> None:
    inputs = GraphInputs(
        "sketch", {**PARAMS, "kind": "sketch"}, 1, "j", "sketches/a.png", sketch_dark_lines=False
    )
    g = build_graph(inputs, MANIFEST, WORKFLOWS, checkpoint="c", controlnet="n")
    assert "12" not in g
    assert g["13"]["inputs"]["image"] == ["11", 0]


def test_a_style_added_only_in_the_manifest_builds_a_graph(tmp_path: Path) -> None:
    text = (
        (ROOT / "loras" / "styles.toml").read_text()
        + """
[styles.japandi]
display_name = "Japandi"
description = "Japanese calm meets Scandinavian warmth."
lora_file = "japandi_v1.safetensors"
version = "v1"
trigger_words = ["japandi style"]
strength_model = 0.6
strength_clip = 0.5
prompt_template = "{trigger}, {prompt}, photoreal"
negative_template = "{negative}, clutter"
preview_image = "previews/japandi.png"
"""
    )
    import tomllib

    manifest = parse_manifest(tomllib.loads(text), tmp_path / "styles.toml")
    inputs = GraphInputs("text", {**PARAMS, "style": "japandi"}, 7, "job-j")
    g = build_graph(inputs, manifest, WORKFLOWS, checkpoint="c", controlnet="n")
    assert g["10"]["inputs"]["lora_name"] == "japandi_v1.safetensors"
    assert (g["10"]["inputs"]["strength_model"], g["10"]["inputs"]["strength_clip"]) == (0.6, 0.5)
    assert g["6"]["inputs"]["text"] == "japandi style, sunlit living room, photoreal"


def test_unknown_style_and_missing_sketch_are_graph_errors() -> None:
    with pytest.raises(GraphError):
        graph(style="baroque")
    inputs = GraphInputs("sketch", {**PARAMS, "kind": "sketch"}, 1, "j", None)
    with pytest.raises(GraphError):
        build_graph(inputs, MANIFEST, WORKFLOWS, checkpoint="c", controlnet="n")


def test_the_workflow_readme_names_nodes_and_inputs_that_exist() -> None:
    readme = (WORKFLOWS / "README.md").read_text().split(PRODUCT_SECTION)[0]
    rows = re.findall(r"^\| `(\d+)` \| (\w+) \| ([^|]*) \|", readme, re.MULTILINE)
    assert len(rows) >= 12
    for kind in ("text", "sketch"):
        raw = load_workflow(WORKFLOWS, kind)
        for node_id, class_type, inputs in rows:
            if node_id not in raw:
                assert kind == "text" and node_id in {"11", "12", "13", "14", "15"}
                continue
            assert raw[node_id]["class_type"] == class_type
            for name in re.findall(r"`(\w+)`", inputs):
                assert name in raw[node_id]["inputs"], (kind, node_id, name)


def test_workflow_files_are_api_format_with_string_ids() -> None:
    for name in ("txt2img.json", "sketch2img.json"):
        g = json.loads((WORKFLOWS / name).read_text())
        for node_id, node in g.items():
            assert isinstance(node_id, str) and {"class_type", "inputs"} <= set(node)
        assert all(isinstance(link[0], str) and link[0] in g for link in links(g))


def test_the_workflows_dir_default_is_this_folder() -> None:
    assert WORKFLOWS_DIR == WORKFLOWS


@pytest.mark.parametrize("checkpoint", ["", "other.safetensors"])
def test_the_warm_up_graph_is_the_text_graph_cut_down_to_a_1_step_preview(checkpoint: str) -> None:
    g = warmup_graph(WORKFLOWS, checkpoint=checkpoint, size_px=96)
    raw = load_workflow(WORKFLOWS, "text")
    assert "10" not in g and all(link[0] in g for link in links(g))
    assert g["3"]["inputs"]["model"] == ["4", 0] and g["6"]["inputs"]["clip"] == ["4", 1]
    assert g["4"]["inputs"]["ckpt_name"] == (checkpoint or raw["4"]["inputs"]["ckpt_name"])
    assert g["5"]["inputs"] == {"width": 96, "height": 96, "batch_size": 1}
    assert g["3"]["inputs"]["steps"] == 1
    assert g["9"] == {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    assert all("_meta" not in node for node in g.values())


PRODUCT_SECTION = "## The product template"


def test_the_workflow_readmes_product_table_names_the_nodes_of_product_json() -> None:
    section = (WORKFLOWS / "README.md").read_text().split(PRODUCT_SECTION)[1]
    graph = json.loads((WORKFLOWS / "product.json").read_text())
    checked = set()
    for ids_cell, classes_cell in re.findall(r"^\| (`[^|]*) \| ([^|]*) \|", section, re.MULTILINE):
        ids: list[str] = []
        for first, last in re.findall(r"`(\d+)`(?:-`(\d+)`)?", ids_cell):
            ids += [str(n) for n in range(int(first), int(last or first) + 1)]
        classes = re.split(r", | → ", classes_cell.strip())
        if not all(re.fullmatch(r"[A-Z][A-Za-z0-9]+", c) for c in classes):
            continue  # described in words (the checkpoint, LoRA and prompts, as in the other graphs)
        if len(classes) == len(ids):
            assert [graph[n]["class_type"] for n in ids] == classes, ids_cell
        else:  # a chain: the row's classes, in the graph's order of those ids
            assert sorted({graph[n]["class_type"] for n in ids}) == sorted(set(classes)), ids_cell
        checked |= set(ids)
    assert checked | {"4", "10", "6", "7"} == set(graph)  # every node of the graph is in the table
