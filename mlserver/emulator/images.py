"""Stand-in renders: real PNGs of the requested size, deterministic for the same inputs, drawn so a person can
tell them apart (prompt, style and seed on a colour field from the seed; a sketch graph shows its sketch)."""

from __future__ import annotations

import hashlib
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo


@dataclass(frozen=True)
class RenderSpec:
    width: int
    height: int
    seed: int
    text: str
    loras: tuple[str, ...]
    checkpoint: str
    control: Image.Image | None = None
    control_strength: float = 0.0


def _colour(seed: int, salt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    return digest[0], digest[1], digest[2]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def render(spec: RenderSpec, index: int) -> Image.Image:
    w, h = max(1, spec.width), max(1, spec.height)
    seed = spec.seed + index
    top, bottom = _colour(seed, "top"), _colour(seed, "bottom")
    img = Image.linear_gradient("L").resize((w, h))
    img = ImageOps.colorize(img, top, bottom).convert("RGB")
    if spec.control is not None:
        sketch = ImageOps.fit(spec.control.convert("L"), (w, h))
        lines = sketch.point(lambda v: 255 if v > 127 else 0)  # white lines on black: the scribble
        img.paste((250, 250, 240), mask=lines)
    draw = ImageDraw.Draw(img)
    size = max(10, min(w, h) // 22)
    font = _font(size)
    style = ", ".join(Path(lora).stem for lora in spec.loras) or "no style LoRA"
    text_lines = [
        *textwrap.wrap(spec.text, width=max(12, w // (size // 2 + 1)))[:6],
        "",
        f"style: {style}",
        f"seed: {seed}",
        f"{w}x{h} · {Path(spec.checkpoint).stem}",
    ]
    y = size
    for line in text_lines:
        draw.text((size + 1, y + 1), line, fill=(0, 0, 0), font=font)
        draw.text((size, y), line, fill=(255, 255, 255), font=font)
        y += int(size * 1.3)
    return img


def save_png(
    img: Image.Image,
    path: Path,
    prompt: dict[str, Any] | None,
    extra_pnginfo: dict[str, Any] | None,
    compress_level: int = 4,
) -> None:
    meta = PngInfo()
    if prompt is not None:
        meta.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        meta.add_text(key, json.dumps(value))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, pnginfo=meta, compress_level=compress_level)


def diagnostic(width: int, height: int, lines: list[str], salt: str, base: Image.Image | None) -> Image.Image:
    """A stand-in output of a node the emulator only knows from its spec: the node's input image (or a
    colour field) at the output's size, labelled with what made it, so a person can follow a graph."""
    w, h = max(1, width), max(1, height)
    if base is not None:
        img = base.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
    else:
        digest = hashlib.sha256(salt.encode()).digest()
        img = ImageOps.colorize(
            Image.linear_gradient("L").resize((w, h)), tuple(digest[:3]), tuple(digest[3:6])
        )
        img = img.convert("RGB")
    draw = ImageDraw.Draw(img)
    size = max(8, min(w, h) // 24)
    font = _font(size)
    y = size
    for line in [*lines, f"{w}x{h}"]:
        draw.text((size + 1, y + 1), line, fill=(0, 0, 0), font=font)
        draw.text((size, y), line, fill=(255, 255, 0), font=font)
        y += int(size * 1.3)
    return img


def diagnostic_mask(width: int, height: int) -> Image.Image:
    """A stand-in MASK: an ellipse in the middle (1 inside, 0 outside), as an 8-bit image."""
    w, h = max(1, width), max(1, height)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((w // 4, h // 4, w - w // 4 - 1, h - h // 4 - 1), fill=255)
    return mask
