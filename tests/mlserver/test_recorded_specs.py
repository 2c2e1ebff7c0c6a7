"""Conformance of node specs: the recorded ComfyUI 0.3.64 `/object_info` against the server at hand.

With COMFYUI_URL at a real ComfyUI, every recorded class is compared with that server's `/object_info`
(does the record still say what the server says?). Against the emulator, the classes it implements are
compared with the record (does the emulator's hand-written catalogue say what the real server said?).
Combos that list a server's own files (models, input images) are compared by shape, not by their options.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import httpx
import pytest

from tests.support.comfy import REAL_COMFYUI, ROOT

pytestmark = pytest.mark.comfyui

CORE = ROOT / "tests" / "data" / "object_info" / "comfyui-0.3.64.json"
PACK = ROOT / "tests" / "data" / "object_info" / "studio-pack.json"
# Combos filled from the server's folders: their options differ from one server to the next.
FOLDER_INPUTS = {
    ("LoadImage", "image"),
    ("LoadImageMask", "image"),
    ("VAELoader", "vae_name"),
    ("CheckpointLoaderSimple", "ckpt_name"),
    ("LoraLoader", "lora_name"),
    ("LoraLoaderModelOnly", "lora_name"),
    ("ControlNetLoader", "control_net_name"),
    ("UpscaleModelLoader", "model_name"),
    ("CLIPVisionLoader", "clip_name"),
}
FILE_NAME = re.compile(r"\.[A-Za-z0-9]{2,12}$")
FIELDS = (
    "input_order",
    "output",
    "output_is_list",
    "output_name",
    "name",
    "display_name",
    "description",
    "python_module",
    "category",
    "output_node",
    "output_tooltips",
    "deprecated",
    "experimental",
    "api_node",
)


def _lists_files(class_type: str, name: str, *options: Any) -> bool:
    if (class_type, name) in FOLDER_INPUTS:
        return True
    return any(
        isinstance(o, list) and any(isinstance(v, str) and FILE_NAME.search(v) for v in o) for o in options
    )


def _combo_shape(spec: list[Any]) -> tuple[list[Any], Any]:
    """A spec with a folder combo's options taken out: (the spec, the options)."""
    spec = copy.deepcopy(spec)
    if isinstance(spec[0], list):
        options, spec[0] = spec[0], "<files>"
        return spec, options
    if spec[0] == "COMBO" and len(spec) > 1:
        return spec, spec[1].pop("options", None)
    return spec, None


def spec_differences(class_type: str, recorded: dict[str, Any], served: dict[str, Any]) -> list[str]:
    """Every way `served` differs from `recorded` for one class, one plain sentence each."""
    found = []
    for field in FIELDS:
        if recorded.get(field) != served.get(field):
            found.append(
                f"{class_type}.{field}: recorded {recorded.get(field)!r}, served {served.get(field)!r}"
            )
    for category in ("required", "optional", "hidden"):
        want = recorded.get("input", {}).get(category, {})
        got = served.get("input", {}).get(category, {})
        for name in sorted(set(want) | set(got)):
            where = f"{class_type}.input.{category}.{name}"
            if name not in got or name not in want:
                found.append(f"{where}: {'only recorded' if name not in got else 'only served'}")
                continue
            a, b = want[name], got[name]
            if category != "hidden":
                shape_a, options_a = _combo_shape(a)
                shape_b, options_b = _combo_shape(b)
                if _lists_files(class_type, name, options_a, options_b):
                    a, b = shape_a, shape_b
            if a != b:
                found.append(f"{where}: recorded {json.dumps(a)}, served {json.dumps(b)}")
    return found


def test_the_recorded_core_specs_match_the_servers(comfyui_url: str) -> None:
    if not CORE.is_file():
        pytest.skip(f"{CORE.name} is not recorded yet (record a real ComfyUI 0.3.64's /object_info there)")
    recorded: dict[str, Any] = json.loads(CORE.read_text())
    served = httpx.get(f"{comfyui_url}/object_info", timeout=120).json()
    # A real server is compared class for class; the emulator for the classes it implements.
    classes = sorted(recorded if REAL_COMFYUI else set(recorded) & set(served))
    assert classes, "no class in common between the record and the server"
    missing = [c for c in classes if c not in served]
    differences = [d for c in classes if c in served for d in spec_differences(c, recorded[c], served[c])]
    assert not missing and not differences, "\n".join(
        [f"{c}: recorded, not served" for c in missing] + differences
    )


def test_spec_differences_name_each_difference_plainly() -> None:
    pack = json.loads(PACK.read_text())
    same = copy.deepcopy(pack["TiledUpscalePack"])
    assert spec_differences("TiledUpscalePack", pack["TiledUpscalePack"], same) == []
    same["input"]["required"]["steps"][1]["max"] = 100
    del same["input"]["optional"]["mask"]
    same["category"] = "elsewhere"
    assert spec_differences("TiledUpscalePack", pack["TiledUpscalePack"], same) == [
        "TiledUpscalePack.category: recorded 'studio-pack/upscaling', served 'elsewhere'",
        'TiledUpscalePack.input.required.steps: recorded ["INT", {"default": 20, "min": 1, "max": 10000}], '
        'served ["INT", {"default": 20, "min": 1, "max": 100}]',
        "TiledUpscalePack.input.optional.mask: only recorded",
    ]
    files = copy.deepcopy(pack["UpscaleModelLoaderPack"])
    files["input"]["required"]["model_name"][1]["options"] = ["other.pth"]  # a server's own files
    assert spec_differences("UpscaleModelLoaderPack", pack["UpscaleModelLoaderPack"], files) == []
    modes = copy.deepcopy(pack["TiledUpscalePack"])
    modes["input"]["required"]["mode"][0] = ["linear"]  # not files: the options must agree
    assert len(spec_differences("TiledUpscalePack", pack["TiledUpscalePack"], modes)) == 1
