"""Conformance of the node packs' specs: tests/data/object_info/packs.json against the server at hand.

With COMFYUI_URL at a real ComfyUI, every recorded pack class the server has is compared with its
`/object_info`; the classes it lacks (a server without the packs, or an older pack) are a reported condition
(printed under "reported conditions" at the end of the run), never a silent skip. Against the emulator, which
loads the record by default, every class must be served exactly as recorded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.mlserver.comfy_client import Comfy, graph
from tests.mlserver.test_recorded_specs import spec_differences
from tests.support.comfy import REAL_COMFYUI, ROOT, EmulatorProcess

pytestmark = pytest.mark.comfyui

PACKS = ROOT / "tests" / "data" / "object_info" / "packs.json"
RECORDED: dict[str, Any] = json.loads(PACKS.read_text())
PACK_OF = {
    "custom_nodes.comfyui_controlnet_aux": "comfyui_controlnet_aux",
    "custom_nodes.ComfyUI_IPAdapter_plus": "ComfyUI_IPAdapter_plus",
}
# What the product and redesign templates are built on: each must be in the record.
TEMPLATE_CLASSES = {
    "DepthAnythingV2Preprocessor",
    "CannyEdgePreprocessor",
    "M-LSDPreprocessor",
    "InpaintPreprocessor",
    "IPAdapterModelLoader",
    "IPAdapterAdvanced",
    "IPAdapterUnifiedLoader",
    "PrepImageForClipVision",
}


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def missing_classes(recorded: dict[str, Any], served: dict[str, Any]) -> list[str]:
    """One sentence per pack of which the server lacks recorded classes."""
    by_pack: dict[str, list[str]] = {}
    for name, info in recorded.items():
        module = str(info.get("python_module"))
        by_pack.setdefault(PACK_OF.get(module, module), []).append(name)
    sentences = []
    for pack, names in sorted(by_pack.items()):
        lacking = sorted(n for n in names if n not in served)
        if len(lacking) == len(names):
            sentences.append(
                f"the server lacks {pack} (none of its {len(names)} recorded classes): not compared"
            )
        elif lacking:
            sentences.append(f"the server lacks {pack}'s {', '.join(lacking)}: those not compared")
    return sentences


def test_the_record_holds_every_class_the_templates_use_from_both_packs() -> None:
    assert TEMPLATE_CLASSES <= set(RECORDED)
    assert {str(i["python_module"]) for i in RECORDED.values()} == set(PACK_OF)
    depth = RECORDED["DepthAnythingV2Preprocessor"]["input"]["optional"]["ckpt_name"]
    assert "depth_anything_v2_vits.pth" in depth[0]  # the Apache-2.0 one the manifest pins


def test_the_recorded_pack_specs_match_the_servers(
    comfyui_url: str, reported_condition: Callable[[str], None]
) -> None:
    served = httpx.get(f"{comfyui_url}/object_info", timeout=120).json()
    present = sorted(set(RECORDED) & set(served))
    differences = [d for c in present for d in spec_differences(c, RECORDED[c], served[c])]
    assert not differences, "\n".join(differences)
    lacking = missing_classes(RECORDED, served)
    if REAL_COMFYUI:
        for sentence in lacking:
            reported_condition(f"{comfyui_url}: {sentence}")
        if not lacking:
            reported_condition(f"{comfyui_url}: all {len(present)} recorded pack classes compared, all alike")
    else:
        assert not lacking, "the emulator loads packs.json by default: " + "; ".join(lacking)


def test_a_server_without_the_packs_is_reported_pack_by_pack() -> None:
    served = {k: v for k, v in RECORDED.items() if "IPAdapter" in str(v["python_module"])}
    served.pop("IPAdapterNoise")
    (ipadapter, aux) = missing_classes(RECORDED, served)
    assert aux == "the server lacks comfyui_controlnet_aux (none of its 6 recorded classes): not compared"
    assert ipadapter == "the server lacks ComfyUI_IPAdapter_plus's IPAdapterNoise: those not compared"
    assert missing_classes(RECORDED, RECORDED) == []


def test_a_product_in_a_room_graph_of_pack_and_core_classes_runs_on_the_emulator(
    emulator: EmulatorProcess,
) -> None:
    """What issue 17's template is made of, on the emulator as started by default: depth from the room
    photo (the Apache-2.0 Depth Anything V2 file), a depth ControlNet, an IPAdapter style photo, a 4x upscale
    and the product pasted back. Every model file is named as in the manifest, listed as on the ML host."""
    assert "ipadapter" in httpx.get(f"{emulator.url}/models").json()
    assert httpx.get(f"{emulator.url}/models/ipadapter").json() == ["ip-adapter_sd15.safetensors"]
    clip = httpx.get(f"{emulator.url}/object_info/CLIPVisionLoader").json()["CLIPVisionLoader"]
    assert clip["input"]["required"]["clip_name"][0] == ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"]
    Image.new("RGB", (96, 64), (200, 180, 150)).save(emulator.base_dir / "input" / "room.png")
    Image.new("RGBA", (32, 32), (10, 20, 30, 255)).save(emulator.base_dir / "input" / "product.png")
    g = graph()
    g["5"]["inputs"].update(width=96, height=64)
    g.update(
        {
            "20": node("LoadImage", image="room.png"),
            "21": node("DepthAnythingV2Preprocessor", image=["20", 0], ckpt_name="depth_anything_v2_vits.pth",
                       resolution=512),
            "22": node("ControlNetLoader", control_net_name="control_v11f1p_sd15_depth.safetensors"),
            "23": node("ControlNetApplyAdvanced", positive=["6", 0], negative=["7", 0], control_net=["22", 0],
                       image=["21", 0], strength=0.8, start_percent=0.0, end_percent=1.0),
            "24": node("IPAdapterModelLoader", ipadapter_file="ip-adapter_sd15.safetensors"),
            "25": node("CLIPVisionLoader", clip_name="CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"),
            "26": node("IPAdapterAdvanced", model=["10", 0], ipadapter=["24", 0], image=["20", 0], weight=0.7,
                       weight_type="style transfer", combine_embeds="concat", start_at=0.0, end_at=1.0,
                       embeds_scaling="V only", clip_vision=["25", 0]),
            "27": node("UpscaleModelLoader", model_name="RealESRGAN_x4plus.pth"),
            "28": node("ImageUpscaleWithModel", upscale_model=["27", 0], image=["8", 0]),
            "29": node("LoadImage", image="product.png"),
            # LoadImage's mask is 1 - alpha: the cut-out's opaque pixels are 0 there, so it is inverted
            "32": node("InvertMask", mask=["29", 1]),
            "30": node("ImageCompositeMasked", destination=["28", 0], source=["29", 0], x=100, y=60,
                       resize_source=False, mask=["32", 0]),
            "31": node("SaveImage", images=["30", 0], filename_prefix="product/final"),
        }
    )  # fmt: skip
    g["3"]["inputs"].update(model=["26", 0], positive=["23", 0], negative=["23", 1])
    comfy = Comfy(emulator.url)
    pid, messages = comfy.run(g)
    assert "execution_success" in [m["type"] for m in messages], messages
    outputs = comfy.history(pid)["outputs"]
    r = comfy.http.get("/view", params=outputs["31"]["images"][0])
    final = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert final.size == (384, 256)  # 96x64, upscaled x4
    assert final.getpixel((100, 60)) == final.getpixel((131, 91)) == (10, 20, 30)  # the product, exact
    assert final.getpixel((99, 60)) != (10, 20, 30) and final.getpixel((132, 91)) != (10, 20, 30)
