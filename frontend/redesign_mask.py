"""The mask painted on the redesign canvas, as the PNG the backend takes (role `mask`, the photo's size).

The canvas paints opaque magenta strokes over the photo. Its image data is the strokes alone (transparent
elsewhere) or, where a canvas build bakes the background in, the photo with the strokes: either way a
pixel is in the mask where it is painted magenta, or not transparent when the image has transparency.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

STROKE = "#ff00ff"


def mask_png(image_data: np.ndarray, width: int, height: int) -> bytes | None:
    """White-on-black PNG of `width` x `height` (the photo's size); None when nothing is painted."""
    rgba = np.asarray(image_data)
    if rgba.ndim != 3 or rgba.shape[2] < 3:
        return None
    alpha = rgba[..., 3] if rgba.shape[2] == 4 else np.full(rgba.shape[:2], 255, np.uint8)
    if (alpha < 255).any():
        painted = alpha > 0
    else:
        r, g, b = (rgba[..., i].astype(int) for i in range(3))
        painted = (r > 200) & (b > 200) & (g < 60)
    if not painted.any():
        return None
    mask = Image.fromarray(np.where(painted, 255, 0).astype(np.uint8), "L")
    mask = mask.resize((width, height), Image.Resampling.NEAREST)
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()
