"""Test data: job bodies and images made on the fly."""

from __future__ import annotations

import io
import itertools
import json
import struct
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

_counter = itertools.count(1)


def job_body(**overrides: Any) -> dict[str, Any]:
    """A valid text job, unique per call (so ComfyUI's cache never short-cuts it)."""
    n = next(_counter)
    body: dict[str, Any] = {
        "prompt": f"sunlit living room {n}, rattan chairs, teak floor",
        "negative_prompt": "clutter",
        "style": "indochine",
        "width": 512,
        "height": 512,
        "steps": 4,
        "seed": 1000 + n,
    }
    body.update(overrides)
    return body


def sketch_png(
    width: int = 640, height: int = 480, dark_on_light: bool = True, fmt: str = "PNG", **save: Any
) -> bytes:
    """A hand-drawn-looking room sketch: lines of a floor, walls, a window and a sofa."""
    bg, ink = ((255, 255, 255), (20, 20, 20)) if dark_on_light else ((0, 0, 0), (240, 240, 240))
    img = Image.new("RGB", (width, height), bg)
    d = ImageDraw.Draw(img)
    w, h = width, height
    d.line([(0, int(h * 0.7)), (w, int(h * 0.7))], fill=ink, width=3)
    d.rectangle([int(w * 0.1), int(h * 0.15), int(w * 0.35), int(h * 0.5)], outline=ink, width=3)
    d.rectangle([int(w * 0.5), int(h * 0.55), int(w * 0.9), int(h * 0.75)], outline=ink, width=4)
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


def safetensors() -> bytes:
    """A well-formed safetensors file without tensors (what a model loader can open)."""
    header = json.dumps({"__metadata__": {}}).encode()
    return struct.pack("<Q", len(header)) + header


def fill_models(comfy_base: Path, models: dict[str, list[str]]) -> None:
    """ComfyUI's models folders under `comfy_base` holding these files: folder -> file names."""
    for folder, names in models.items():
        for name in names:
            path = comfy_base / "models" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(safetensors())
