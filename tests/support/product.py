"""Pictures for the product template's tests: a product already cut out (an RGBA PNG, so the upload keeps
its own alpha and needs no background-removal model), a composition sketch, a style photo, and the
product job's inputs; `product_mask` is where the product is opaque."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

SIDE = 512  # the product template renders at 512x512 and upscales x4
UPSCALED = 4 * SIDE


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def product_png(side: int = SIDE) -> bytes:
    """A lamp-like product on a transparent background: a shaded, grainy body (a changed pixel shows; as
    smooth as a photographed object, which an upscaler reproduces), a soft edge (partly transparent pixels,
    as a real cut-out has), nothing touching the frame."""
    rng = np.random.default_rng(17)
    coarse = Image.fromarray(rng.integers(40, 220, size=(16, 16, 3), dtype=np.uint8), "RGB")
    smooth = np.asarray(coarse.resize((side, side), Image.Resampling.BILINEAR), dtype=np.int16)
    grain = rng.integers(-3, 4, size=(side, side, 3), dtype=np.int16)  # every pixel its own value
    rgb = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    alpha = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(alpha)
    s = side / SIDE
    draw.rectangle((200 * s, 120 * s, 312 * s, 400 * s), fill=255)
    draw.ellipse((150 * s, 60 * s, 362 * s, 200 * s), fill=255)
    draw.rectangle((199 * s, 119 * s, 313 * s, 401 * s), outline=128)  # a half-transparent rim
    img = Image.fromarray(rgb, "RGB")
    img.putalpha(alpha)
    return png(img)


def product_mask(data: bytes) -> NDArray[np.bool_]:
    """Where the product is fully opaque (alpha 255): ComfyUI's product mask is exactly 1 there."""
    with Image.open(io.BytesIO(data)) as img:
        opaque: NDArray[np.bool_] = np.asarray(img.getchannel("A")) == 255
    return opaque


def composition_png(side: int = SIDE) -> bytes:
    """Floor and wall lines, dark on white."""
    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    draw.line((0, side * 0.7, side, side * 0.7), fill="black", width=3)
    draw.line((side * 0.3, 0, side * 0.3, side * 0.7), fill="black", width=3)
    draw.line((side * 0.3, side * 0.7, 0, side), fill="black", width=3)
    return png(img)


def style_photo_png(side: int = SIDE) -> bytes:
    """A warm room photo: a lit wall, a wooden floor, a sofa, with gradients and noise."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    wall = np.stack([200 + 40 * x, 170 + 30 * x, 130 + 10 * y], axis=-1)
    floor = np.stack([130 + 30 * np.sin(x * 40), 80 + 20 * np.sin(x * 40), 40 + 10 * y], axis=-1)
    img = np.where((y > 0.65)[..., None], floor, wall)
    img[int(side * 0.45) : int(side * 0.7), int(side * 0.2) : int(side * 0.7)] = (60, 90, 120)
    img += np.random.default_rng(3).normal(0, 6, img.shape)
    return png(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"))


def upload(c: httpx.Client, data: bytes, role: str, name: str = "picture.png") -> httpx.Response:
    return c.post("/api/uploads", files={"file": (name, data, "image/png")}, data={"role": role})


def uploaded(c: httpx.Client, data: bytes, role: str) -> dict[str, Any]:
    r = upload(c, data, role)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def product_inputs(c: httpx.Client, *, composition: bool = True, style_photo: bool = True) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "product": uploaded(c, product_png(), "product")["id"],
        "prompt": "a sunlit living room with a white oak floor",
        "style": "minimalist",
        "depth_strength": 0.9,
        "composition_strength": 0.5,
        "style_strength": 0.6,
        "seed": 1234,
        "steps": 4,
    }
    if composition:
        inputs["composition"] = uploaded(c, composition_png(), "composition")["id"]
    if style_photo:
        inputs["style_photo"] = uploaded(c, style_photo_png(), "style_photo")["id"]
    return inputs


def image_of(c: httpx.Client, url: str) -> Image.Image:
    r = c.get(url)
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content)).convert("RGB")
