"""Sampler live previews, as ComfyUI 0.3.64 sends them with `--preview-method` other than `none`
(reference §2.5; ComfyUI's protocol.py, server.py `send_image` / `send_image_with_metadata`,
comfy_execution/progress.py `WebUIProgressHandler`, main.py `hijack_progress`, latent_preview.py).

Each sampler step yields one JPEG (quality 95) fitted into `--preview-size` (default 512) px, sent as a
binary WebSocket frame that starts with a 4-byte big-endian event type:

- 1 PREVIEW_IMAGE: 4-byte big-endian image type (1 = JPEG, 2 = PNG), then the image; to a client that
  did not announce `supports_preview_metadata` (and to every socket for a prompt without `client_id`),
  after that step's `progress` message;
- 4 PREVIEW_IMAGE_WITH_METADATA: 4-byte big-endian length L, L bytes of UTF-8 JSON
  `{node_id, prompt_id, display_node_id, parent_node_id, real_node_id, image_type}`, then the image; to
  a client whose first text frame was `feature_flags` with `supports_preview_metadata: true`, between
  that step's `progress_state` and `progress`.

The picture stands in for latent2rgb's (or TAESD's): the step's stand-in render, blurred less at each
step, so a test sees the image change while sampling. Only its format is ComfyUI's.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

from PIL import Image, ImageFilter, ImageOps

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_TYPES = {"JPEG": 1, "PNG": 2}
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")
JPEG_QUALITY = 95  # ComfyUI's send_image: quality=95, compress_level=1
BLUR_AT_FIRST_STEP = 24.0  # px of Gaussian blur at step 1, none at the last


def fitted(image: Image.Image, max_size: int) -> Image.Image:
    """ComfyUI's `ImageOps.contain(image, (max, max), BILINEAR)`: larger or smaller, to fit the box."""
    return ImageOps.contain(image, (max_size, max_size), Image.Resampling.BILINEAR)


def step_image(base: Image.Image, step: int, steps: int) -> bytes:
    """The preview JPEG of step `step` of `steps`: `base` (already fitted) blurred less as steps pass."""
    radius = BLUR_AT_FIRST_STEP * (steps - step) / max(1, steps - 1) if steps > 1 else 0.0
    img = base.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else base
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def legacy_frame(image: bytes, image_type: str = "JPEG") -> bytes:
    """Event 1: type, image type, image (what send_image writes)."""
    return struct.pack(">I", PREVIEW_IMAGE) + struct.pack(">I", IMAGE_TYPES[image_type]) + image


def metadata(prompt_id: str, node_id: str) -> dict[str, Any]:
    """WebUIProgressHandler's metadata for a plain graph's node (no subgraph: display = real = node)."""
    return {
        "node_id": node_id,
        "prompt_id": prompt_id,
        "display_node_id": node_id,
        "parent_node_id": None,
        "real_node_id": node_id,
    }


def metadata_frame(image: bytes, meta: dict[str, Any], image_type: str = "JPEG") -> bytes:
    """Event 4: type, metadata length, metadata JSON (send_image_with_metadata adds `image_type`), image."""
    body = json.dumps({**meta, "image_type": "image/png" if image_type == "PNG" else "image/jpeg"})
    encoded = body.encode("utf-8")
    return struct.pack(">I", PREVIEW_IMAGE_WITH_METADATA) + struct.pack(">I", len(encoded)) + encoded + image
