"""A first inputs declaration for a ComfyUI graph (API format), for a lead to edit before publishing.

It guesses from well-known nodes: prompts (CLIPTextEncode.text), the sampler's seed, steps and guidance,
the latent size, uploaded images (LoadImage) and the checkpoint; results are the SaveImage nodes. Only
literal inputs are offered (a linked input is set by the graph itself). Pure functions, no Streamlit.
"""

from __future__ import annotations

import re
from typing import Any

# (class_type, input) -> (key, label, kind, extra fields)
KNOWN: dict[tuple[str, str], tuple[str, str, str, dict[str, Any]]] = {
    ("KSampler", "seed"): ("seed", "Seed", "seed", {"required": False}),
    ("KSampler", "steps"): ("steps", "Steps", "integer", {"help": "More steps: finer detail, slower"}),
    ("KSampler", "cfg"): ("cfg", "Guidance", "number", {"help": "How literally the prompt is followed"}),
    ("EmptyLatentImage", "width"): ("width", "Width (px)", "integer", {}),
    ("EmptyLatentImage", "height"): ("height", "Height (px)", "integer", {}),
    ("LoadImage", "image"): ("image", "Image", "image", {}),
    ("CheckpointLoaderSimple", "ckpt_name"): ("checkpoint", "Checkpoint", "model", {"folder": "checkpoints"}),
}
PROMPT_LABELS = (("prompt", "Describe the room"), ("negative_prompt", "Keep out of the render"))


def is_ui_format(doc: Any) -> bool:
    """A file saved with ComfyUI's plain Save (nodes and links), not Export (API)."""
    return isinstance(doc, dict) and isinstance(doc.get("nodes"), list) and "links" in doc


def is_api_format(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and bool(doc)
        and all(isinstance(n, dict) and "class_type" in n for n in doc.values())
    )


def slug(filename: str) -> str:
    """A template name from a file name: lower case, digits and dashes, 2..40 characters."""
    base = re.sub(r"\.json$", "", filename.lower())
    name = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:40].strip("-")
    return name if len(name) >= 2 and name[0].isalnum() else "my-template"


def _ordered(graph: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(graph.items(), key=lambda kv: (len(kv[0]), kv[0]))


def _add(inputs: list[dict[str, Any]], decl: dict[str, Any], node_id: str) -> None:
    keys = {d["key"] for d in inputs}
    if decl["key"] in keys:
        decl["key"] = f"{decl['key']}_{node_id}"[:40]
    if decl["key"] not in keys:
        inputs.append(decl)


def skeleton(graph: dict[str, Any], filename: str = "workflow.json") -> dict[str, Any]:
    """The declaration (without its graph) a lead starts from."""
    inputs: list[dict[str, Any]] = []
    prompts = 0
    for node_id, node in _ordered(graph):
        cls, literals = str(node.get("class_type")), node.get("inputs") or {}
        for name, value in literals.items():
            if isinstance(value, list):  # a link: the graph sets it
                continue
            if cls == "CLIPTextEncode" and name == "text":
                key, label = PROMPT_LABELS[min(prompts, 1)]
                prompts += 1
                decl = {"key": key, "label": label, "kind": "long_text", "default": value}
            elif (cls, name) in KNOWN:
                key, label, kind, extra = KNOWN[(cls, name)]
                decl = {"key": key, "label": label, "kind": kind, **extra}
                if kind not in ("image", "seed"):
                    decl["default"] = value
            else:
                continue
            decl["targets"] = [[node_id, name]]
            _add(inputs, decl, node_id)
    results = [i for i, n in _ordered(graph) if n.get("class_type") == "SaveImage"]
    title = slug(filename).replace("-", " ").capitalize()
    return {
        "name": slug(filename),
        "title": title,
        "description": "",
        "inputs": inputs,
        "outputs": {"results": results, "passes": []},
    }
