"""What a graph needs of an instance to run: node classes and model files per models folder; its lane.

A model file is a literal input of a loader: the known-loader table names the folder of the core loaders'
inputs; for any other class, a combo literal ending in a model extension is a model file whose folder the
caller's `folder_of(file)` says (the backend looks the file up in the instances' `/models/{folder}`
listings). The lane of a custom version is `n:` + 16 hex of sha256 of its needs' canonical JSON, so
versions that need the same things share a lane.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contract import comfy_spec
from contract.template_decl import Declaration

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx", ".gguf", ".sft")
# (class, input) -> models folder, for the loaders ComfyUI ships and the IPAdapter pack's.
KNOWN_LOADERS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "config_name"): "configs",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("VAELoader", "vae_name"): "vae",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("IPAdapterModelLoader", "ipadapter_file"): "ipadapter",
}
# VAELoader's names that are no file of the vae folder (TAESD pairs, the pixel-space "VAE").
NOT_FILES = frozenset({"taesd", "taesdxl", "taesd3", "taef1", "pixel_space"})
FolderOf = Callable[[str], str | None]


@dataclass(frozen=True)
class Needs:
    nodes: tuple[str, ...]
    models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unplaced: tuple[str, ...] = ()  # model files no folder was found for (a validation problem)

    def to_json(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes), "models": {k: list(v) for k, v in sorted(self.models.items())}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Needs:
        models = {str(k): tuple(sorted(v)) for k, v in (doc.get("models") or {}).items()}
        return cls(tuple(sorted(doc.get("nodes") or [])), models)

    def covered_by(self, classes: Iterable[str], files: Mapping[str, Iterable[str]]) -> list[str]:
        """What an instance lacks to run these needs (empty: it covers them)."""
        have = set(classes)
        missing = [f"class {c}" for c in self.nodes if c not in have]
        for folder, names in self.models.items():
            present = set(files.get(folder, ()))
            missing += [f"{folder}/{n}" for n in names if n not in present]
        return missing


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_model_file(value: Any) -> bool:
    return isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS)


def model_folder(
    class_type: str,
    input_name: str,
    value: Any,
    object_info: Mapping[str, Any] | None,
    folder_of: FolderOf | None,
) -> str | None:
    """The models folder of a literal when it names a model file; None when it names none.

    Raises LookupError when it is a model file whose folder no table or listing says."""
    known = KNOWN_LOADERS.get((class_type, input_name))
    if known is not None:
        return known if isinstance(value, str) and value and value not in NOT_FILES else None
    if not is_model_file(value) or not _is_combo(class_type, input_name, object_info):
        return None
    folder = folder_of(value) if folder_of is not None else None
    if folder is None:
        raise LookupError(value)
    return folder


def _is_combo(class_type: str, input_name: str, object_info: Mapping[str, Any] | None) -> bool:
    """Without the class's spec a literal file name is taken at its word."""
    info = object_info.get(class_type) if object_info is not None else None
    if info is None:
        return True
    spec = comfy_spec.input_spec(info, input_name)
    return spec is not None and spec.is_combo


def needs(
    graph: Mapping[str, Any],
    object_info: Mapping[str, Any] | None = None,
    folder_of: FolderOf | None = None,
    *,
    skip: Iterable[tuple[str, str]] = (),
    extra_models: Mapping[str, Iterable[str]] | None = None,
) -> Needs:
    """Classes and model files of a graph; `skip` = (node, input) pairs a job fills (not the graph's)."""
    skipped = set(skip)
    models: dict[str, set[str]] = {k: set(v) for k, v in (extra_models or {}).items()}
    unplaced: set[str] = set()
    for node_id, node in graph.items():
        class_type = node["class_type"]
        for name, value in node["inputs"].items():
            if isinstance(value, list) or (node_id, name) in skipped:
                continue
            try:
                folder = model_folder(class_type, name, value, object_info, folder_of)
            except LookupError:
                unplaced.add(value)
                continue
            if folder is not None:
                models.setdefault(folder, set()).add(value)
    classes = tuple(sorted({node["class_type"] for node in graph.values()}))
    placed = {k: tuple(sorted(v)) for k, v in sorted(models.items()) if v}
    return Needs(classes, placed, tuple(sorted(unplaced)))


def declaration_needs(
    decl: Declaration,
    object_info: Mapping[str, Any] | None = None,
    folder_of: FolderOf | None = None,
    *,
    style_loras: Iterable[str] = (),
) -> Needs:
    """A version's needs: the graph's, with what its inputs fill replaced by what they may fill.

    A model input needs each of its choices (or its default); a style input every LoRA of the style
    manifest (`style_loras`); image inputs fill uploads, no model files."""
    skip: set[tuple[str, str]] = set()
    extra: dict[str, set[str]] = {}
    for item in decl.inputs:
        if item.kind == "image":
            skip.update(item.targets)
        elif item.kind == "style" and item.style is not None and item.style.lora_node is not None:
            skip.add((item.style.lora_node, "lora_name"))
            extra.setdefault("loras", set()).update(style_loras)
        elif item.kind == "model":
            files = item.constraints.choices or ([item.default] if item.has_default else [])
            if not files:
                continue  # the graph's own literal is what runs
            skip.update(item.targets)
            for node_id, name in item.targets:
                node = decl.graph.get(node_id) or {}
                folder = item.folder or KNOWN_LOADERS.get((node.get("class_type", ""), name))
                if folder is not None:
                    extra.setdefault(folder, set()).update(str(f) for f in files)
    return needs(decl.graph, object_info, folder_of, skip=skip, extra_models=extra)


def lane_of(needs_: Needs) -> str:
    return "n:" + hashlib.sha256(canonical_json(needs_.to_json()).encode()).hexdigest()[:16]


def content_sha256(declaration: Declaration) -> str:
    """The hash of what a version is (graph, inputs, outputs): identical content, identical hash."""
    return hashlib.sha256(canonical_json(declaration.spec()).encode()).hexdigest()
