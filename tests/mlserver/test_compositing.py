"""Composites and masks with real pixels, as ComfyUI 0.3.64 computes them.

tests/data/composite/ holds two inputs (an RGB destination, 37x29, and an RGBA source, 13x11, whose alpha is
0, 77, 128, 200 or 255: LoadImage's mask is 1 - alpha/255) and what a real ComfyUI 0.3.64 saved for the graph
below (`comfyui-s<node>.png`). The same graph on the server at hand must save the same bytes: exactly, except
where a mask or source is resized (torch's bilinear, reproduced to ~1e-6, so a byte may differ by one).
Then the templates' guarantee: through ImageCompositeMasked, pixels outside the mask are the destination's
own, bytes for bytes, and pixels inside a full mask are the source's.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mlserver.emulator import pixels
from tests.mlserver.comfy_client import Comfy, graph
from tests.support.comfy import ROOT

pytestmark = pytest.mark.comfyui

DATA = ROOT / "tests" / "data" / "composite"
EXACT = {"3", "5", "7", "10", "12", "13"}
RESIZED = {"4"}


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def upload(comfy: Comfy, path: Path, name: str) -> None:
    files = {"image": (name, path.read_bytes(), "image/png")}
    r = comfy.http.post("/upload/image", files=files, data={"overwrite": "true"})
    assert r.status_code == 200, r.text


def saved(comfy: Comfy, outputs: dict[str, Any], node_id: str) -> np.ndarray:
    r = comfy.http.get("/view", params=outputs[node_id]["images"][0])
    assert r.status_code == 200
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16)


def recorded_graph(dest: str, src: str) -> dict[str, Any]:
    """The graph the recorded outputs came from (node ids are the file names' numbers)."""
    mask = ["2", 1]
    g = {
        "1": node("LoadImage", image=dest),
        "2": node("LoadImage", image=src),
        "3": node("ImageCompositeMasked", destination=["1", 0], source=["2", 0], x=5, y=7,
                  resize_source=False, mask=mask),
        "4": node("ImageCompositeMasked", destination=["1", 0], source=["2", 0], x=0, y=0,
                  resize_source=True, mask=mask),
        "5": node("ImageCompositeMasked", destination=["1", 0], source=["2", 0], x=30, y=25,
                  resize_source=False),
        "6": node("GrowMask", mask=mask, expand=2, tapered_corners=True),
        "7": node("MaskToImage", mask=["6", 0]),
        "8": node("GrowMask", mask=mask, expand=-1, tapered_corners=False),
        "9": node("InvertMask", mask=["8", 0]),
        "10": node("MaskToImage", mask=["9", 0]),
        "11": node("ImageToMask", image=["1", 0], channel="green"),
        "12": node("MaskToImage", mask=["11", 0]),
        "13": node("ImageCompositeMasked", destination=["1", 0], source=["2", 0], x=3, y=2,
                   resize_source=False, mask=["6", 0]),
    }  # fmt: skip
    for n in sorted(EXACT | RESIZED):
        g[f"s{n}"] = node("SaveImage", images=[n, 0], filename_prefix=f"composite/{n}")
    return g


def test_composites_and_masks_save_what_comfyui_saved(comfyui_url: str) -> None:
    comfy = Comfy(comfyui_url)
    tag = uuid.uuid4().hex[:8]
    upload(comfy, DATA / "destination.png", f"dest-{tag}.png")
    upload(comfy, DATA / "source.png", f"src-{tag}.png")
    pid, messages = comfy.run(recorded_graph(f"dest-{tag}.png", f"src-{tag}.png"))
    assert "execution_success" in [m["type"] for m in messages]
    outputs = comfy.history(pid)["outputs"]
    for n in sorted(EXACT | RESIZED):
        want = np.asarray(Image.open(DATA / f"comfyui-s{n}.png").convert("RGB"), dtype=np.int16)
        got = saved(comfy, outputs, f"s{n}")
        assert got.shape == want.shape, n
        worst = int(np.abs(got - want).max())
        assert worst <= (1 if n in RESIZED else 0), f"node {n}: differs by up to {worst}"


def test_outside_the_mask_a_composite_keeps_the_destination_and_inside_takes_the_source(
    comfyui_url: str, tmp_path: Path
) -> None:
    """A render with the room photo composited back under a keep mask: the kept pixels are the photo's
    bytes, every other pixel is the render's (a partial mask blends, as ComfyUI does)."""
    side = 64
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    alpha = np.full((side, side), 255, dtype=np.uint8)  # opaque: mask 0, the render stays
    alpha[8:40, 16:48] = 0  # transparent: mask 1, the photo is kept
    alpha[50:54, 4:60] = 128  # a blend
    Image.fromarray(np.dstack([photo, alpha]), "RGBA").save(tmp_path / "keep.png")
    comfy = Comfy(comfyui_url)
    name = f"keep-{uuid.uuid4().hex[:8]}.png"
    upload(comfy, tmp_path / "keep.png", name)
    g = graph()
    g["5"]["inputs"].update(width=side, height=side)
    g.update(
        {
            "20": node("LoadImage", image=name),
            "21": node("ImageCompositeMasked", destination=["8", 0], source=["20", 0], x=0, y=0,
                       resize_source=False, mask=["20", 1]),
            "22": node("SaveImage", images=["21", 0], filename_prefix="composite/keep"),
        }
    )  # fmt: skip
    pid, messages = comfy.run(g)
    assert "execution_success" in [m["type"] for m in messages]
    outputs = comfy.history(pid)["outputs"]
    render, result = saved(comfy, outputs, "9"), saved(comfy, outputs, "22")
    keep = alpha == 0
    outside = alpha == 255
    assert np.array_equal(result[keep], photo[keep].astype(np.int16))
    assert np.array_equal(result[outside], render[outside])
    blend = alpha == 128
    m = np.float32(1.0) - np.float32(128) / np.float32(255)
    expected = m * (photo[blend] / np.float32(255)) + (1 - m) * (render[blend] / np.float32(255))
    assert np.abs(result[blend] - np.clip(255 * expected, 0, 255).astype(np.int16)).max() <= 1


def test_the_inpaint_encoders_give_a_latent_cut_to_a_multiple_of_8(comfyui_url: str) -> None:
    """VAEEncodeForInpaint, InpaintModelConditioning and SetLatentNoiseMask on a 37x29 photo: 32x24 latents
    (as a real ComfyUI 0.3.64 decodes them)."""
    comfy = Comfy(comfyui_url)
    tag = uuid.uuid4().hex[:8]
    upload(comfy, DATA / "destination.png", f"dest-{tag}.png")
    upload(comfy, DATA / "source.png", f"src-{tag}.png")
    g = graph()
    vae, mask, photo = ["4", 2], ["21", 1], ["20", 0]
    g.update(
        {
            "20": node("LoadImage", image=f"dest-{tag}.png"),
            "21": node("LoadImage", image=f"src-{tag}.png"),
            "22": node("VAEEncodeForInpaint", pixels=photo, vae=vae, mask=mask, grow_mask_by=6),
            "23": node("InpaintModelConditioning", positive=["6", 0], negative=["7", 0], vae=vae,
                       pixels=photo, mask=mask, noise_mask=True),
            "24": node("SetLatentNoiseMask", samples=["22", 0], mask=mask),
        }
    )  # fmt: skip
    for n, latent in (("30", ["22", 0]), ("31", ["23", 2]), ("32", ["24", 0])):
        g[n] = node("VAEDecode", samples=latent, vae=vae)
        g[f"s{n}"] = node("SaveImage", images=[n, 0], filename_prefix=f"inpaint/{n}")
    pid, messages = comfy.run(g, partial_execution_targets=["s30", "s31", "s32"])
    assert "execution_success" in [m["type"] for m in messages]
    outputs = comfy.history(pid)["outputs"]
    for n in ("s30", "s31", "s32"):
        assert saved(comfy, outputs, n).shape == (24, 32, 3), n


def test_grow_and_the_inpaint_noise_mask_follow_comfyuis_kernels() -> None:
    mask = np.zeros((1, 7, 7), dtype=np.float32)
    mask[0, 3, 3] = 1.0
    cross = pixels.grow(mask, 1, tapered_corners=True)[0]
    assert cross[2:5, 2:5].tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]] and cross.sum() == 5
    assert pixels.grow(mask, 1, tapered_corners=False)[0].sum() == 9
    assert pixels.grow(pixels.grow(mask, 2, False), -2, False)[0].sum() == 1
    grown = pixels.box_any(mask, 6)  # padding 3, an even kernel: one larger, shifted as torch's conv2d
    assert grown.shape == (1, 8, 8) and grown[0, 1:7, 1:7].all() and grown.sum() == 36


def test_a_composite_past_the_edge_is_cut_and_a_short_batch_repeats() -> None:
    dest = np.zeros((3, 3, 4, 4), dtype=np.float32)
    src = np.ones((2, 3, 2, 2), dtype=np.float32) * np.float32([0.25, 0.5])[:, None, None, None]
    out = pixels.composite(dest, src, 3, 3, None, resize_source=False)
    assert out[:, :, 3, 3].tolist() == [[0.25] * 3, [0.5] * 3, [0.25] * 3]
    assert out[:, :, :3, :].sum() == 0 and out[:, :, 3, :3].sum() == 0
    assert dest.sum() == 0  # the destination passed in is not written
