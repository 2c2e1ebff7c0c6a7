"""Image processing: sketch uploads in (checked, oriented, re-encoded), renders out (checked, thumbnailed).

Everything here but `save_thumbnail` is CPU-bound Pillow work: callers run it through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from backend.models import Image
    from backend.storage import Storage

ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
THUMBNAIL_SIDE_PX = 384
DARK_LINES_THRESHOLD = 127  # mean brightness above this = light paper with dark lines


class ImageRejected(ValueError):
    """The upload is not an image we accept; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProcessedSketch:
    png: bytes
    width: int
    height: int
    dark_lines: bool


def _open_checked(data: bytes, max_pixels: int) -> PILImage.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            img = PILImage.open(io.BytesIO(data))
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise ImageRejected("image_too_large", f"image has too many pixels: {exc}") from exc
        except UnidentifiedImageError as exc:
            raise ImageRejected("not_an_image", "the file is not a PNG, JPEG or WebP image") from exc
    if img.format not in ALLOWED_FORMATS:
        raise ImageRejected(
            "unsupported_image_format", f"{img.format} images are not accepted: use PNG, JPEG or WebP"
        )
    w, h = img.size
    if w * h > max_pixels:
        raise ImageRejected(
            "image_too_large", f"{w}x{h} is {w * h / 1e6:.0f} megapixels; the limit is {max_pixels / 1e6:.0f}"
        )
    if w < 64 or h < 64:
        raise ImageRejected("image_too_small", f"{w}x{h} is too small: at least 64x64 pixels")
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("corrupt_image", f"the image is truncated or corrupt: {exc}") from exc
    return img


def process_sketch(data: bytes, *, max_pixels: int, max_side: int) -> ProcessedSketch:
    """Validate, apply EXIF orientation, flatten to greyscale on white, bound the size, re-encode as PNG."""
    img = _open_checked(data, max_pixels)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PILImage.alpha_composite(background, rgba)
    grey = img.convert("L")
    if max(grey.size) > max_side:
        grey.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    mean = sum(i * n for i, n in enumerate(grey.histogram())) / (grey.width * grey.height)
    out = io.BytesIO()
    grey.save(out, "PNG", optimize=False)
    return ProcessedSketch(out.getvalue(), grey.width, grey.height, dark_lines=mean > DARK_LINES_THRESHOLD)


def control_preview(png: bytes, *, width: int, height: int, invert: bool) -> bytes:
    """The sketch as ControlNet receives it: inverted when needed, centre-cropped and scaled to the render."""
    img = PILImage.open(io.BytesIO(png)).convert("L")
    if invert:
        img = ImageOps.invert(img)
    img = ImageOps.fit(img, (width, height), PILImage.Resampling.LANCZOS, centering=(0.5, 0.5))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@dataclass(frozen=True)
class RenderFile:
    width: int
    height: int


def check_render(png: bytes) -> RenderFile:
    """Check a render from ComfyUI is a whole PNG: its signature, every chunk's CRC, its end. The pixels
    are not decoded (that is the thumbnail's work, done after the job succeeded)."""
    try:
        img = PILImage.open(io.BytesIO(png))
        if img.format != "PNG":
            raise ValueError(f"{img.format} instead of PNG")
        size = img.size
        img.verify()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise ImageRejected("corrupt_render", f"ComfyUI returned an unreadable image: {exc}") from exc
    return RenderFile(*size)


def make_thumbnail(png: bytes) -> bytes:
    """The JPEG shown in the gallery: at most THUMBNAIL_SIDE_PX a side."""
    img = PILImage.open(io.BytesIO(png))
    thumb = img.convert("RGB")
    thumb.thumbnail((THUMBNAIL_SIDE_PX, THUMBNAIL_SIDE_PX), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


async def save_thumbnail(storage: Storage, image: Image, png: bytes) -> None:
    """Make the render's thumbnail and store it under `image.thumb_key` (the same bytes every time)."""
    jpeg = await asyncio.to_thread(make_thumbnail, png)
    await storage.save(image.thumb_key, jpeg, "image/jpeg")
