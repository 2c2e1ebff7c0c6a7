"""Room photos and painted masks for the redesign tests (the photo templates restyle, stage, edit)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw


def room_photo(width: int = 640, height: int = 480) -> bytes:
    """A colourful room-like photo (no flat areas, so a changed pixel shows)."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([(xs * 255 // width), (ys * 255 // height), ((xs + ys) * 7) % 256], axis=-1)
    img = Image.fromarray(rgb.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    draw.rectangle((width // 8, height // 6, width // 3, height // 2), fill=(240, 240, 255))  # a window
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def painted_mask(
    width: int, height: int, box: tuple[int, int, int, int] | None, *, alpha: bool = True
) -> bytes:
    """A mask as the canvas paints it: strokes on a clear canvas (alpha), or white on black (luminance)."""
    if alpha:
        img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        fill: Any = (255, 80, 80, 255)
    else:
        img = Image.new("RGB", (width, height), (0, 0, 0))
        fill = (255, 255, 255)
    if box is not None:
        ImageDraw.Draw(img).rectangle(box, fill=fill)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def upload(c: httpx.Client, data: bytes, role: str, name: str = "room.png") -> dict[str, Any]:
    r = c.post("/api/uploads", files={"file": (name, data, "application/octet-stream")}, data={"role": role})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def pixels(c: httpx.Client, url: str) -> np.ndarray:
    r = c.get(url)
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))


def outputs(c: httpx.Client, job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The render, the photo at the render size and the mask the composite used (passes), as arrays."""
    assert job["status"] == "succeeded", job
    passes = {p["label"]: p for p in job["passes"]}
    photo = pixels(c, passes["Photo at render size"]["url"])
    mask_pass = next(p for label, p in passes.items() if label != "Photo at render size")
    mask = pixels(c, mask_pass["url"])[..., 0]
    return pixels(c, job["images"][0]["url"]), photo, mask
