"""A designer's words for what the API says in a developer's: field paths become the labels on the form,
pydantic's sentences become plain ones, a node's failure becomes what to do next. The API keeps its
exact field paths and codes; only what the studio shows changes.

Also the limits a designer meets (brief length, sizes, uploads), said before they are hit.
"""

from __future__ import annotations

import re
from typing import Any

from frontend.api_client import ApiError

# The API's limits (backend/schemas.py and backend/config.py defaults); the API stays the judge.
PROMPT_MAX = 2000
SIDE_MIN, SIDE_MAX, SIDE_STEP = 256, 1024, 8
UPLOAD_MAX_MB = 15
UPLOAD_MAX_MEGAPIXELS = 36
UPLOAD_FORMATS = "PNG, JPEG or WebP"
UPLOAD_LIMITS = f"{UPLOAD_FORMATS}, up to {UPLOAD_MAX_MB} MB and {UPLOAD_MAX_MEGAPIXELS} megapixels"

LABELS = {
    "prompt": "Describe the room",
    "negative_prompt": "Keep out of the render",
    "width": "Width",
    "height": "Height",
    "steps": "Steps",
    "cfg": "Guidance",
    "seed": "Seed",
    "num_images": "Images",
    "style": "Style",
    "sketch_strength": "Sketch strength",
    "upload_id": "Sketch",
    "file": "Sketch file",
}
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"String should have at least 1 character", "is empty: write a few words"),
    (r"String should have at least (\d+) characters", r"needs at least \1 characters"),
    (r"String should have at most (\d+) characters", r"is too long: at most \1 characters"),
    (r"Input should be less than or equal to ([\d.]+)", r"must be \1 or less"),
    (r"Input should be greater than or equal to ([\d.]+)", r"must be \1 or more"),
    (r"Input should be a valid integer.*", "must be a whole number"),
    (r"Input should be a valid number.*", "must be a number"),
    (r"Field required", "is missing"),
    (r"String should match pattern.*", "has characters the studio cannot use"),
)
_CODES = {
    "backend_unreachable": "The studio server cannot be reached. Check your connection, or try again "
    "in a minute.",
    "rate_limited": "You have started many renders or uploads in a short time. "
    "Wait a minute, then try again.",
    "too_many_active_jobs": "You already have as many renders running as your account allows. "
    "Wait for one to finish, or cancel one.",
    "upload_too_large": f"This file is too large. Sketches can be {UPLOAD_LIMITS}.",
    "image_too_large": f"This image has too many pixels. Sketches can be {UPLOAD_LIMITS}.",
    "not_an_image": f"This file is not an image the studio can read. Use {UPLOAD_FORMATS}.",
    "unsupported_image_format": f"This image format is not supported. Use {UPLOAD_FORMATS}.",
    "unsupported_media_type": f"This file type is not supported. Use {UPLOAD_FORMATS}.",
    "corrupt_image": "This image file is damaged (cut short or corrupt). "
    "Export it again and upload the new file.",
    "image_too_small": "This image is too small: it must be at least 64 × 64 pixels.",
}
_NODE_FAILURE = re.compile(r"^\s*\d+\s*:")  # "11: JSON decode error": a workflow node's own words


def field_label(path: str) -> str:
    """The form's label for an API field path (`prompt`, `inputs.steps`, `body.width`)."""
    last = path.split(".")[-1]
    return LABELS.get(last, last.replace("_", " ").capitalize())


def plain(message: str) -> str:
    for pattern, words in _PHRASES:
        if re.fullmatch(pattern, message):
            return re.sub(pattern, words, message)
    return message


def say(err: ApiError) -> str:
    """The sentence a designer reads for an API error."""
    if err.code in _CODES:
        return _CODES[err.code]
    if err.details:
        parts = [f"{field_label(d.field)} {plain(d.message)}" for d in err.details[:3]]
        return ". ".join(p[0].upper() + p[1:] for p in parts) + "."
    return err.message


def failure(job: dict[str, Any]) -> tuple[str, str | None]:
    """Why a render failed, for the designer, and the exact words for an admin (None: same sentence)."""
    error = job.get("error") or {}
    message = str(error.get("message") or "")
    code = str(error.get("code") or "")
    if not message:
        return "The render failed. Press Render to try again.", None
    if _NODE_FAILURE.match(message) or "node" in code or code.startswith("comfy"):
        return (
            "The GPU server could not finish this render. Press Render to try again; if it fails again, "
            "tell your studio admin (the details below help them).",
            f"{code}: {message}" if code else message,
        )
    return f"The render failed: {message}", None


def count_text(text: str, limit: int = PROMPT_MAX) -> str:
    return f"{len(text):,} / {limit:,} characters"


def text_problem(text: str, limit: int = PROMPT_MAX, *, required: bool = False) -> str | None:
    """Why a brief cannot be sent (None: it can)."""
    if required and not text.strip():
        return "Describe the room in a few words to render."
    if len(text) > limit:
        over = len(text) - limit
        return f"This is {len(text):,} characters; the limit is {limit:,}. Shorten it by {over:,} to render."
    return None


def side_problem(value: int | float | None) -> str | None:
    """Why a width or height cannot be rendered (None: it can)."""
    if value is None:
        return f"Enter a size from {SIDE_MIN} to {SIDE_MAX} px."
    side = int(value)
    if side < SIDE_MIN or side > SIDE_MAX:
        return f"{side} px is outside what the studio renders: {SIDE_MIN} to {SIDE_MAX} px."
    if side % SIDE_STEP:
        near = max(SIDE_MIN, min(SIDE_MAX, round(side / SIDE_STEP) * SIDE_STEP))
        return f"Use a multiple of {SIDE_STEP} px (the nearest is {near})."
    return None
