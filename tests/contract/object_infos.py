"""A recorded-like `/object_info` for the contract tests: the emulator's catalogue (ComfyUI 0.3.64's specs
of the core nodes our graphs use) with fixed model folders, plus the studio-pack record."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mlserver.emulator.nodes import CATALOGUE, object_info

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "contract" / "workflows"
CHECKPOINT = "interiordesignsuperm_v2.safetensors"
CONTROLNET = "control_v11p_sd15_scribble.safetensors"
FILES: dict[tuple[str, ...], list[str]] = {
    ("models", "checkpoints"): [CHECKPOINT, "other.safetensors"],
    ("models", "loras"): ["indochine_v1.safetensors", "minimalist_v1.safetensors"],
    ("models", "controlnet"): [CONTROLNET],
    ("models", "upscale_models"): ["4x_ultra.pth"],
    ("vae_names",): ["vae-ft-mse.safetensors", "pixel_space"],
    ("input_images",): ["uploads/abc.png"],
}
STYLE_IDS = ["indochine", "minimalist", "none"]


def core_object_info() -> dict[str, Any]:
    info = {name: object_info(node, lambda d: list(FILES.get(d, []))) for name, node in CATALOGUE.items()}
    pack = json.loads((ROOT / "tests" / "data" / "object_info" / "studio-pack.json").read_text())
    return copy.deepcopy({**info, **pack})


PHOTO_CONTROLNETS = [
    "control_v11f1p_sd15_depth.safetensors",
    "control_v11p_sd15_mlsd.safetensors",
    "control_v11p_sd15_inpaint.safetensors",
]


def photo_object_info() -> dict[str, Any]:
    """core_object_info plus the recorded core classes it lacks (mask nodes) and the node packs' record
    (comfyui_controlnet_aux, IPAdapter_plus), with the photo templates' ControlNets installed."""
    records = ROOT / "tests" / "data" / "object_info"
    recorded = json.loads((records / "comfyui-0.3.64.json").read_text())
    packs = json.loads((records / "packs.json").read_text())
    info = {**recorded, **packs, **core_object_info()}
    names = info["ControlNetLoader"]["input"]["required"]["control_net_name"][0]
    names.extend(PHOTO_CONTROLNETS)
    return info


RECORDS = ROOT / "tests" / "data" / "object_info"
MODELS_TOML = ROOT / "mlserver" / "models.toml"


def studio_object_info() -> dict[str, Any]:
    """The recorded ComfyUI 0.3.64 core and node packs' `/object_info`, its loaders' file combos listing the
    files of `mlserver/models.toml` and the styles' LoRAs: an ML host with every model of the studio."""
    import tomllib

    info: dict[str, Any] = json.loads((RECORDS / "comfyui-0.3.64.json").read_text())
    info.update(json.loads((RECORDS / "packs.json").read_text()))
    files: dict[str, list[str]] = {}
    for entry in tomllib.loads(MODELS_TOML.read_text())["models"].values():
        files.setdefault(entry["folder"], []).append(entry["file"])
    files["loras"] = ["indochine_v1.safetensors", "minimalist_v1.safetensors"]
    loaders = {
        ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
        ("LoraLoader", "lora_name"): "loras",
        ("ControlNetLoader", "control_net_name"): "controlnet",
        ("CLIPVisionLoader", "clip_name"): "clip_vision",
        ("UpscaleModelLoader", "model_name"): "upscale_models",
        ("IPAdapterModelLoader", "ipadapter_file"): "ipadapter",
    }
    for (class_type, name), folder in loaders.items():
        spec = info[class_type]["input"]["required"][name]
        listed = spec[1]["options"] if spec[0] == "COMBO" else spec[0]
        listed.extend(f for f in files.get(folder, []) if f not in listed)
    return info
