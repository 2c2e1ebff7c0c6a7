"""What each upload role does to the file it receives, and the files and facts a stored upload keeps.

- `sketch`: flattened to greyscale, dark lines on light paper noted (inverted before ControlNet);
- `product`: cut out of its background (`backend.cutout`): RGBA; its photo and matte kept for adjustments;
- `style_photo`: a photograph, RGB; a sketch sent as one is refused;
- `photo` (a room to redesign) and `composition`: RGB;
- `mask` (a region painted on a photo: its alpha, or its luminance when opaque): binary RGBA, its coverage
  kept (`cutout = {"method": "mask", "coverage": share}`), never resized (a job checks it against its photo).
Every role: PNG, JPEG, WebP or HEIC only, decompression bombs and tiny images refused, EXIF orientation
applied, at most UPLOAD_MAX_SIDE a side, re-encoded as PNG. CPU-bound: callers use `asyncio.to_thread`.

A template's image input may require a role: `required_role_error` says what is wrong with an upload that
has another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.config import Settings
from backend.cutout import Cutout, process_product
from backend.images import process_mask, process_photo, process_sketch, process_style_photo
from backend.models import UploadRole

ROLE_NAMES = {
    UploadRole.sketch: "a sketch",
    UploadRole.product: "a product photo",
    UploadRole.style_photo: "a style photo",
    UploadRole.composition: "a composition",
    UploadRole.photo: "a room photo",
    UploadRole.mask: "a mask",
}


@dataclass(frozen=True)
class Prepared:
    """An upload ready to store: its PNG and, for a product, the photo and matte its cut-out came from."""

    png: bytes
    width: int
    height: int
    dark_lines: bool = False
    source_png: bytes = b""
    matte_png: bytes = b""
    cutout: dict[str, Any] | None = None


def prepare(role: UploadRole, data: bytes, settings: Settings) -> Prepared:
    """The file processed as its role says; ImageRejected (bad input) or CutoutUnavailable (503)."""
    limits = {"max_pixels": settings.upload_max_pixels, "max_side": settings.upload_max_side}
    if role is UploadRole.product:
        cut = process_product(
            data, **limits, model_path=settings.rembg_model_path, threads=settings.cutout_threads
        )
        return prepared_cutout(cut)
    if role is UploadRole.mask:
        mask = process_mask(data, **limits)
        record = {"method": "mask", "coverage": round(mask.coverage, 6)}
        return Prepared(mask.png, mask.width, mask.height, cutout=record)
    if role is UploadRole.sketch:
        image = process_sketch(data, **limits)
    elif role is UploadRole.style_photo:
        image = process_style_photo(data, **limits)
    else:
        image = process_photo(data, **limits)
    return Prepared(image.png, image.width, image.height, image.dark_lines)


def prepared_cutout(cut: Cutout) -> Prepared:
    return Prepared(cut.png, cut.width, cut.height, False, cut.source_png, cut.matte_png, cut.record)


def required_role_error(role: str, required: str) -> str | None:
    """Why an upload of `role` cannot fill an image input that requires `required` (None: it can)."""
    if role == required:
        return None
    have, want = ROLE_NAMES.get(UploadRole(role), role), ROLE_NAMES.get(UploadRole(required), required)
    return f"this input takes {want}; the upload is {have} (upload it with role={required})"
