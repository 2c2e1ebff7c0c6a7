"""Classes known only from a recorded /object_info: served as recorded, validated as ComfyUI 0.3.64 would,
run by their declared RETURN_TYPES with sizes that follow the inputs (over real HTTP and WebSocket).

tests/data/object_info/studio-pack.json is a node pack's /object_info, written by hand in the shape ComfyUI
answers (classic and schema entries), with classes the emulator does not implement.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from mlserver.emulator.ops import upscale_factor
from tests.mlserver.comfy_client import Comfy, graph
from tests.support.comfy import ROOT, EmulatorProcess, start_emulator

PACK = ROOT / "tests" / "data" / "object_info" / "studio-pack.json"
RECORDED: dict[str, Any] = json.loads(PACK.read_text())


@pytest.fixture
def sandbox(tmp_path: Path):
    """An emulator started with the pack: `--object-info FILE`."""
    emu = start_emulator(tmp_path / "comfyui", extra_args=["--object-info", str(PACK)])
    try:
        yield emu
    finally:
        emu.kill()


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def pack_graph(**changes: Any) -> dict[str, Any]:
    """txt2img at 256² whose model goes through a recorded IPAdapter, its image through a recorded upscaler
    (2x model, 2 steps) and scaler (×1.5), split into image and mask, saved by a recorded output node; and a
    recorded SD3 latent decoded by the emulator's own VAEDecode into a PreviewImage."""
    g = graph()
    g.update(
        {
            "30": node("IPAdapterModelLoader", ipadapter_file="ip-adapter_sd15.safetensors"),
            "31": node(
                "IPAdapterSimpleish",
                model=["10", 0],
                ipadapter=["30", 0],
                image=["32", 0],
                weight="0.5",
                weight_type="standard",
            ),
            "32": node("EmptyImage", width=64, height=64, batch_size=1, color=0),
            "20": node("UpscaleModelLoaderPack", model_name="RealESRGAN_x2plus.pth"),
            "21": node(
                "TiledUpscalePack",
                image=["8", 0],
                upscale_model=["20", 0],
                seed=1,
                steps=2,
                denoise=0.3,
                mode="chess",
            ),
            "22": node("ImageScaleByPack", image=["21", 0], upscale_method="lanczos", scale_by=1.5),
            "23": node("SplitImageWithAlpha", image=["22", 0]),
            "24": node("MaskToImage", mask=["23", 1]),
            "25": node("SaveImagePack", images=["24", 0], filename_prefix="pack/out", note="", extra=1),
            "40": node("EmptySD3LatentImage", width=320, height=192, batch_size=2),
            "41": node("VAEDecode", samples=["40", 0], vae=["4", 2]),
            "42": node("PreviewImage", images=["41", 0]),
        }
    )
    g["3"]["inputs"]["model"] = ["31", 0]
    for path, value in changes.items():
        node_id, key = path.split(".")
        g[node_id]["inputs"][key] = value
    return g


def sizes(comfy: Comfy, outputs: dict[str, Any], node: str) -> list[tuple[int, int]]:
    found = []
    for image in outputs[node]["images"]:
        r = comfy.http.get("/view", params=image)
        assert r.status_code == 200
        found.append(Image.open(io.BytesIO(r.content)).size)
    return found


def test_a_graph_of_recorded_classes_validates_and_runs_with_sizes_that_follow_its_inputs(
    sandbox: EmulatorProcess,
) -> None:
    comfy = Comfy(sandbox.url)
    pid, messages = comfy.run(pack_graph())
    kinds = [m["type"] for m in messages]
    assert "execution_success" in kinds and "execution_error" not in kinds
    progress = [m["data"] for m in messages if m["type"] == "progress" and m["data"]["node"] == "21"]
    assert [(p["value"], p["max"]) for p in progress] == [(1, 2), (2, 2)]
    entry = comfy.history(pid)
    outputs = entry["outputs"]
    assert sizes(comfy, outputs, "9") == [(256, 256)]
    assert sizes(comfy, outputs, "25") == [(768, 768)]  # 256 × 2 (x2plus model) × 1.5
    assert outputs["25"]["images"][0]["type"] == "output"
    assert outputs["25"]["images"][0]["subfolder"] == "pack"
    assert sizes(comfy, outputs, "42") == [(320, 192), (320, 192)]
    assert {i["type"] for i in outputs["42"]["images"]} == {"temp"}
    assert entry["prompt"][2]["31"]["inputs"]["weight"] == 0.5  # converted as ComfyUI stores it
    executed = {m["data"]["node"] for m in messages if m["type"] == "executed"}
    assert executed == {"9", "25", "42"}


def test_an_upscale_model_multiplies_by_what_its_name_says() -> None:
    assert upscale_factor("RealESRGAN_x2plus.pth") == 2
    assert upscale_factor("4x-UltraSharp.pth") == 4
    assert upscale_factor("8x_NMKD-Superscale.pth") == 8
    assert upscale_factor("sub/2x_foo.safetensors") == 2
    assert upscale_factor("ESRGAN.pth") == 4
    assert upscale_factor("x16-model.pth") == 4  # no 1..8 factor in it


def test_the_upscale_follows_the_chosen_model(sandbox: EmulatorProcess) -> None:
    comfy = Comfy(sandbox.url)
    # A "COMBO" spec's options are not checked in 0.3.64: an unlisted file is accepted (and taken as 4x).
    pid, _ = comfy.run(pack_graph(**{"20.model_name": "unlisted.pth", "22.scale_by": 0.5}))
    assert sizes(comfy, comfy.history(pid)["outputs"], "25") == [(512, 512)]
    pid, _ = comfy.run(pack_graph(**{"20.model_name": "8x_NMKD-Superscale.pth", "22.scale_by": 0.25}))
    assert sizes(comfy, comfy.history(pid)["outputs"], "25") == [(512, 512)]


def test_recorded_classes_are_served_exactly_as_recorded(sandbox: EmulatorProcess) -> None:
    for name, info in RECORDED.items():
        assert httpx.get(f"{sandbox.url}/object_info/{name}").json() == {name: info}
        assert httpx.get(f"{sandbox.url}/api/object_info/{name}").json() == {name: info}
    everything = httpx.get(f"{sandbox.url}/object_info").json()
    assert {k: everything[k] for k in RECORDED} == RECORDED
    assert "KSampler" in everything and "SaveImage" in everything


def node_errors(comfy: Comfy, g: dict[str, Any]) -> dict[str, Any]:
    """The node errors of a graph limited to the pack's save node (the other outputs would still run)."""
    r = comfy.post(g, partial_execution_targets=["25"])
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    return body["node_errors"]


def test_bad_values_for_recorded_classes_get_comfyuis_error_json(sandbox: EmulatorProcess) -> None:
    comfy = Comfy(sandbox.url)
    errors = node_errors(comfy, pack_graph(**{"22.scale_by": 9}))
    assert errors["22"] == {
        "errors": [
            {
                "type": "value_bigger_than_max",
                "message": "Value 9.0 bigger than max of 8.0",
                "details": "scale_by",
                "extra_info": {
                    "input_name": "scale_by",
                    "input_config": ["FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}],
                    "received_value": 9.0,
                },
            }
        ],
        "dependent_outputs": ["25"],
        "class_type": "ImageScaleByPack",
    }
    (err,) = node_errors(comfy, pack_graph(**{"30.ipadapter_file": "nope.bin"}))["30"]["errors"]
    assert err["type"] == "value_not_in_list"
    options = RECORDED["IPAdapterModelLoader"]["input"]["required"]["ipadapter_file"][0]
    assert err["details"] == f"ipadapter_file: 'nope.bin' not in {options}"
    (err,) = node_errors(comfy, pack_graph(**{"24.mask": ["22", 0]}))["24"]["errors"]
    assert err["type"] == "return_type_mismatch"
    assert err["details"] == "mask, received_type(IMAGE) mismatch input_type(MASK)"
    assert err["extra_info"]["input_config"] == ["MASK", {}]
    g = pack_graph()
    del g["21"]["inputs"]["steps"]
    (err,) = node_errors(comfy, g)["21"]["errors"]
    assert err == {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": "steps",
        "extra_info": {"input_name": "steps"},
    }
    (err,) = node_errors(comfy, pack_graph(**{"21.mode": "spiral"}))["21"]["errors"]
    assert err["extra_info"]["input_config"] == [["linear", "chess", "none"], {"default": "chess"}]
    # A link to a slot the source does not have fails inside the walk, and lands on the linked node.
    (err,) = node_errors(comfy, pack_graph(**{"24.mask": ["23", 5]}))["24"]["errors"]
    assert err["type"] == "exception_during_inner_validation" and err["details"] == "tuple index out of range"
    assert err["extra_info"]["exception_type"] == "IndexError" and err["extra_info"]["linked_node"] == [
        "24",
        0,
    ]
    # A failing upstream of one output only: the prompt runs with the other outputs (200 + node_errors).
    r = comfy.post(pack_graph(**{"40.width": 8}))
    assert (
        r.status_code == 200
        and r.json()["node_errors"]["40"]["errors"][0]["type"] == "value_smaller_than_min"
    )


def test_an_optional_recorded_input_and_an_any_typed_output_node(sandbox: EmulatorProcess) -> None:
    g = pack_graph(**{"21.mask": ["23", 1]})
    g["50"] = {"class_type": "PreviewAnyPack", "inputs": {"source": ["20", 0]}}  # "*" takes any link
    comfy = Comfy(sandbox.url)
    pid, messages = comfy.run(g)
    assert "execution_success" in [m["type"] for m in messages]
    assert "50" not in comfy.history(pid)["outputs"]  # an output node without images shows nothing


def test_the_admin_route_turns_a_running_emulator_into_a_sandbox(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path / "comfyui", extra_args=["--bare"])  # without the default records
    try:
        admin_route_sandbox(emulator)
    finally:
        emulator.kill()


def admin_route_sandbox(emulator: EmulatorProcess) -> None:
    comfy = Comfy(emulator.url)
    r = comfy.post(pack_graph())
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Cannot execute because node IPAdapterModelLoader does not exist."
    first = {k: RECORDED[k] for k in list(RECORDED)[:4]}
    r = httpx.post(f"{emulator.url}/emulator/object_info", json=first)
    assert r.status_code == 200
    assert r.json() == {"added": list(first), "updated": [], "implemented": []}
    invert = httpx.get(f"{emulator.url}/object_info/ImageInvert").json()["ImageInvert"]
    changed = {**RECORDED, "ImageInvert": {**invert, "category": "elsewhere"}}
    r = httpx.post(f"{emulator.url}/emulator/object_info", json=changed)
    assert r.json() == {"added": list(RECORDED)[4:], "updated": list(first), "implemented": ["ImageInvert"]}
    assert httpx.get(f"{emulator.url}/object_info/ImageInvert").json()["ImageInvert"] == invert
    assert httpx.get(f"{emulator.url}/api/emulator/object_info").status_code == 404  # not a ComfyUI route
    pid, _ = comfy.run(pack_graph())
    assert sizes(comfy, comfy.history(pid)["outputs"], "25") == [(768, 768)]


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b"not json",
        b'{"X": {"input": {}}}',
        b'{"X": {"input": {"required": {"a": 1}}, "output": []}}',
    ],
)
def test_the_admin_route_refuses_what_is_not_an_object_info(emulator: EmulatorProcess, body: bytes) -> None:
    r = httpx.post(f"{emulator.url}/emulator/object_info", content=body)
    assert r.status_code == 400 and r.json()["error"].startswith("not an /object_info document")


def test_the_command_line_refuses_a_file_that_is_not_an_object_info(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"X": []}')
    args = ["--port", "0", "--base-directory", str(tmp_path / "c"), "--object-info", str(bad)]
    done = subprocess.run(
        [sys.executable, "-m", "mlserver.emulator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--object-info: bad.json: X: a class entry is a JSON object" in done.stderr


@pytest.mark.parametrize(("mode", "size"), [("RGBA", (80, 48)), ("RGB", (64, 64))])
def test_a_recorded_node_fed_by_load_images_mask_takes_comfyuis_mask_size(
    sandbox: EmulatorProcess, mode: str, size: tuple[int, int]
) -> None:
    Image.new(mode, (80, 48), "white").save(sandbox.base_dir / "input" / "room.png")
    g = {
        "1": node("LoadImage", image="room.png"),
        "2": node("MaskToImage", mask=["1", 1]),
        "3": node("SaveImagePack", images=["2", 0], filename_prefix="masks/m", note=""),
        "4": node("GrowMaskPack", mask=["1", 1], expand=4, tapered_corners=True),
        "5": node("MaskToImage", mask=["4", 0]),
        "6": node("ImageScaleByPack", image=["1", 0], upscale_method="area", scale_by=0.5),
        "7": node("SaveImagePack", images=["5", 0], filename_prefix="masks/g", note=""),
        "8": node("PreviewImage", images=["6", 0]),
    }
    comfy = Comfy(sandbox.url)
    pid, _ = comfy.run(g)
    outputs = comfy.history(pid)["outputs"]
    assert sizes(comfy, outputs, "3") == [size] and sizes(comfy, outputs, "7") == [size]
    assert sizes(comfy, outputs, "8") == [(40, 24)]


CORE = ROOT / "tests" / "data" / "object_info" / "comfyui-0.3.64.json"


def test_core_classes_the_emulator_does_not_implement_run_from_the_real_servers_record(
    tmp_path: Path,
) -> None:
    emu = start_emulator(tmp_path / "comfyui", extra_args=["--object-info", str(CORE)])
    try:
        g = graph()
        g.update(
            {
                "20": node("ImageCrop", image=["8", 0], width=128, height=96, x=8, y=8),
                "21": node("ImageBlur", image=["20", 0], blur_radius=3, sigma=1.0),
                "22": node("RepeatImageBatch", image=["21", 0], amount=2),
                "23": node("SaveImage", images=["22", 0], filename_prefix="core/crop"),
                "30": node("SolidMask", value=1.0, width=200, height=100),
                "31": node("MaskToImage", mask=["30", 0]),
                "32": node(
                    "ImageScaleToTotalPixels", image=["31", 0], upscale_method="area", megapixels=0.0763
                ),
                "33": node("PreviewImage", images=["32", 0]),
            }
        )
        comfy = Comfy(emu.url)
        bad = {**g, "21": node("ImageBlur", image=["20", 0], blur_radius=0, sigma=1.0)}
        r = comfy.post(bad, partial_execution_targets=["23"])
        (err,) = r.json()["node_errors"]["21"]["errors"]
        assert r.status_code == 400 and err["type"] == "value_smaller_than_min"
        assert err["extra_info"]["input_config"] == ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}]
        pid, messages = comfy.run(g)
        assert "execution_success" in [m["type"] for m in messages]
        outputs = comfy.history(pid)["outputs"]
        assert sizes(comfy, outputs, "9") == [(256, 256)]
        assert sizes(comfy, outputs, "23") == [(128, 96), (128, 96)]
        assert sizes(comfy, outputs, "33") == [(400, 200)]  # 0.0763 MP ≈ 80,000 pixels at 2:1
    finally:
        emu.kill()


def test_an_implemented_loader_offers_the_recorded_servers_files_too(emulator: EmulatorProcess) -> None:
    core = json.loads(CORE.read_text())
    record = {
        k: copy.deepcopy(core[k]) for k in ("CheckpointLoaderSimple", "LoraLoader", "UpscaleModelLoader")
    }
    record["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["theirs.safetensors"]
    record["LoraLoader"]["input"]["required"]["lora_name"][0] = [
        "indochine_v1.safetensors",
        "their_style.safetensors",
    ]
    record["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"] = ["2x_theirs.pth"]
    r = httpx.post(f"{emulator.url}/emulator/object_info", json=record)
    assert r.json() == {"added": [], "updated": [], "implemented": list(record)}
    served = httpx.get(f"{emulator.url}/object_info").json()
    own = served["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert own[-1] == "theirs.safetensors" and "interiordesignsuperm_v2.safetensors" in own
    loras = served["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert loras.count("indochine_v1.safetensors") == 1 and loras[-1] == "their_style.safetensors"
    upscalers = served["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"]
    assert upscalers == ["RealESRGAN_x4plus.pth", "2x_theirs.pth"]  # the manifest's, then the record's
    comfy = Comfy(emulator.url)
    _, messages = comfy.run(
        graph(**{"4.ckpt_name": "theirs.safetensors", "10.lora_name": "their_style.safetensors"})
    )
    assert "execution_success" in [m["type"] for m in messages]
    g = graph()
    g["20"] = node("UpscaleModelLoader", model_name="2x_theirs.pth")
    g["21"] = node("ImageUpscaleWithModel", upscale_model=["20", 0], image=["8", 0])
    g["9"]["inputs"]["images"] = ["21", 0]
    pid, _ = comfy.run(g)  # a file only the recorded server has loads as if it were here
    assert sizes(comfy, comfy.history(pid)["outputs"], "9") == [(512, 512)]
    (err,) = node_errors_of(comfy.post(graph(**{"4.ckpt_name": "nobodys.safetensors"})), "4")
    assert err["type"] == "value_not_in_list"


def node_errors_of(r: httpx.Response, node_id: str) -> list[dict[str, Any]]:
    assert r.status_code == 400, r.text
    return r.json()["node_errors"][node_id]["errors"]
