"""Image processing: uploads in (checked, oriented, re-encoded: sketches, photos), renders out (checked,
thumbnailed), and the previews of uploads (a sketch as ControlNet gets it, a cut-out on a checkerboard).

Everything here but `save_thumbnail` is CPU-bound Pillow work: callers run it through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image as PILImage
from PIL import ImageChops, ImageFilter, ImageOps, ImageStat, UnidentifiedImageError
from pillow_heif import register_heif_opener

register_heif_opener()  # phone photos: HEIC/HEIF open like any other format

if TYPE_CHECKING:
    from backend.models import Image
    from backend.storage import Storage

ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "HEIF": "image/heic"}
MASK_THRESHOLD = 127  # a mask pixel is "in" above this (alpha, or luminance when the PNG is opaque)
THUMBNAIL_SIDE_PX = 384
DARK_LINES_THRESHOLD = 127  # mean brightness above this = light paper with dark lines
MIN_SIDE_PX = 64
# A "photo" that is a sketch: almost no colour (HSV saturation, 0..255) and most of it one plain paper tone.
SKETCH_MAX_SATURATION = 12.0
SKETCH_PAPER_SHARE = 0.6  # share of pixels within SKETCH_PAPER_BAND of the median brightness
SKETCH_PAPER_BAND = 24
# ...and what is not paper is lines: nearly all of it within SKETCH_LINE_REACH_PX of paper (a photo of a
# white room has furniture and floor in blocks, far from the wall's tone inside them).
SKETCH_LINE_REACH_PX = 2
SKETCH_LINE_SHARE = 0.75
SKETCH_BLANK_SHARE = 0.002  # less ink than this: a blank page, refused as a sketch too
CHECKER_SQUARE_PX = 16
CHECKER_TONES = (204, 255)


class ImageRejected(ValueError):
    """The upload is not an image we accept; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProcessedImage:
    png: bytes
    width: int
    height: int
    dark_lines: bool = False


ProcessedSketch = ProcessedImage


def _open_checked(data: bytes, max_pixels: int) -> PILImage.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            img = PILImage.open(io.BytesIO(data))
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise ImageRejected("image_too_large", f"image has too many pixels: {exc}") from exc
        except UnidentifiedImageError as exc:
            raise ImageRejected("not_an_image", "the file is not a PNG, JPEG, WebP or HEIC image") from exc
    if img.format not in ALLOWED_FORMATS:
        raise ImageRejected(
            "unsupported_image_format", f"{img.format} images are not accepted: use PNG, JPEG, WebP or HEIC"
        )
    w, h = img.size
    if w * h > max_pixels:
        raise ImageRejected(
            "image_too_large", f"{w}x{h} is {w * h / 1e6:.0f} megapixels; the limit is {max_pixels / 1e6:.0f}"
        )
    if w < MIN_SIDE_PX or h < MIN_SIDE_PX:
        raise ImageRejected(
            "image_too_small", f"{w}x{h} is too small: at least {MIN_SIDE_PX}x{MIN_SIDE_PX} pixels"
        )
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


def open_oriented(data: bytes, *, max_pixels: int, max_side: int) -> PILImage.Image:
    """Checked as every upload is, EXIF orientation applied, at most `max_side` a side; its own mode
    (RGBA, LA and palette images with transparency keep their alpha as RGBA)."""
    img = ImageOps.exif_transpose(_open_checked(data, max_pixels))
    if has_alpha(img):
        img = img.convert("RGBA")
    elif img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    return img


def has_alpha(img: PILImage.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def flatten_rgb(img: PILImage.Image) -> PILImage.Image:
    """RGB, any transparency composited on white."""
    if has_alpha(img):
        rgba = img.convert("RGBA")
        return PILImage.alpha_composite(PILImage.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert(
            "RGB"
        )
    return img.convert("RGB")


def encode_png(img: PILImage.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", optimize=False)
    return out.getvalue()


def process_photo(data: bytes, *, max_pixels: int, max_side: int) -> ProcessedImage:
    """A photograph: validated, EXIF orientation applied, flattened to RGB, bounded, re-encoded as PNG."""
    img = flatten_rgb(open_oriented(data, max_pixels=max_pixels, max_side=max_side))
    return ProcessedImage(encode_png(img), img.width, img.height)


@dataclass(frozen=True)
class ProcessedMask:
    png: bytes
    width: int
    height: int
    coverage: float  # the share of pixels in the mask, 0..1


def process_mask(data: bytes, *, max_pixels: int, max_side: int) -> ProcessedMask:
    """A mask painted over a photo: its alpha where it has transparency (painted strokes on a clear
    canvas), else its luminance (white = in). Stored as RGBA whose RGB is the mask (white in) and whose
    alpha is its inverse, so ComfyUI's LoadImage gives the mask on its MASK output (1 - alpha) and on
    its IMAGE output. Not resized: it must match its photo's size, which a job checks."""
    img = ImageOps.exif_transpose(_open_checked(data, max_pixels))
    if max(img.size) > max_side:
        raise ImageRejected(
            "mask_too_large", f"{img.width}x{img.height}: a mask is at most {max_side} pixels a side"
        )
    source = img.convert("RGBA").getchannel("A") if has_alpha(img) else img.convert("L")
    if has_alpha(img) and source.getextrema() == (255, 255):
        source = img.convert("L")  # an opaque PNG with an alpha channel: its luminance is the mask
    mask = source.point(lambda v: 255 if v > MASK_THRESHOLD else 0)
    inside = mask.histogram()[255]
    rgba = PILImage.merge("RGBA", (mask, mask, mask, ImageOps.invert(mask)))
    return ProcessedMask(encode_png(rgba), img.width, img.height, inside / (img.width * img.height))


def process_style_photo(data: bytes, *, max_pixels: int, max_side: int) -> ProcessedImage:
    """A photograph of a room in the wanted style; a sketch sent as one is refused."""
    img = flatten_rgb(open_oriented(data, max_pixels=max_pixels, max_side=max_side))
    if looks_like_sketch(img):
        raise ImageRejected(
            "style_photo_is_sketch",
            "this looks like a sketch (lines on plain paper), not a photograph: upload a photo of a room "
            "in the style you want, or upload the sketch as a sketch",
        )
    return ProcessedImage(encode_png(img), img.width, img.height)


def looks_like_sketch(rgb: PILImage.Image) -> bool:
    """Almost no colour, and most of the picture one plain paper tone (light or dark)."""
    small = rgb.copy()
    small.thumbnail((256, 256))
    saturation = ImageStat.Stat(small.convert("HSV").getchannel("S")).mean[0]
    if saturation > SKETCH_MAX_SATURATION:
        return False
    histogram = small.convert("L").histogram()
    total = sum(histogram)
    running, median = 0, 0
    for level, count in enumerate(histogram):
        running += count
        if running * 2 >= total:
            median = level
            break
    band = histogram[max(0, median - SKETCH_PAPER_BAND) : median + SKETCH_PAPER_BAND + 1]
    if sum(band) / total < SKETCH_PAPER_SHARE:
        return False
    return is_line_like(small.convert("L"), median)


def is_line_like(grey: PILImage.Image, paper: int) -> bool:
    """Whether what is not paper tone is thin lines: nearly all of it close to paper."""
    ink = grey.point(lambda v: 255 if abs(v - paper) > SKETCH_PAPER_BAND else 0)
    ink_px = ink.histogram()[255]
    if ink_px < SKETCH_BLANK_SHARE * grey.width * grey.height:
        return True
    paper_near = ImageOps.invert(ink).filter(ImageFilter.MaxFilter(2 * SKETCH_LINE_REACH_PX + 1))
    near = ImageChops.multiply(ink, paper_near).histogram()[255]
    return near / ink_px >= SKETCH_LINE_SHARE


def checkerboard(size: tuple[int, int]) -> PILImage.Image:
    """The usual picture of "transparent": light grey and white squares."""
    board = PILImage.new("RGB", size, (CHECKER_TONES[1],) * 3)
    dark = (CHECKER_TONES[0],) * 3
    square = PILImage.new("RGB", (CHECKER_SQUARE_PX, CHECKER_SQUARE_PX), dark)
    for y in range(0, size[1], CHECKER_SQUARE_PX):
        for x in range((y // CHECKER_SQUARE_PX) % 2 * CHECKER_SQUARE_PX, size[0], 2 * CHECKER_SQUARE_PX):
            board.paste(square, (x, y))
    return board


def cutout_preview(png: bytes, *, width: int, height: int) -> bytes:
    """A cut-out (RGBA) on a checkerboard of the render size, whole (scaled to fit) and centred."""
    cut = ImageOps.contain(PILImage.open(io.BytesIO(png)).convert("RGBA"), (width, height))
    board = checkerboard((width, height))
    board.paste(cut, ((width - cut.width) // 2, (height - cut.height) // 2), cut)
    return encode_png(board)


def photo_preview(png: bytes, *, width: int, height: int) -> bytes:
    """A photo centre-cropped and scaled to the render size."""
    img = PILImage.open(io.BytesIO(png)).convert("RGB")
    return encode_png(ImageOps.fit(img, (width, height), PILImage.Resampling.LANCZOS, centering=(0.5, 0.5)))


EDGE_THRESHOLD = 48  # of 255: an edge's strength (3x3 Laplacian after a light blur) to count as an edge


def edges_preview(png: bytes, *, width: int, height: int) -> bytes:
    """A composition as the canny ControlNet gets it: centre-cropped and scaled to the render, then its
    edges white on black (close to ComfyUI's Canny node at 0.4/0.8; the render uses that node itself)."""
    img = PILImage.open(io.BytesIO(png)).convert("L")
    img = ImageOps.fit(img, (width, height), PILImage.Resampling.LANCZOS, centering=(0.5, 0.5))
    edges = img.filter(ImageFilter.GaussianBlur(1.0)).filter(ImageFilter.FIND_EDGES)
    return encode_png(edges.point(lambda v: 255 if v >= EDGE_THRESHOLD else 0).convert("RGB"))


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
