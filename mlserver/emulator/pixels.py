"""Pixel arithmetic as ComfyUI 0.3.64 does it on its tensors, on the emulator's images and masks.

ComfyUI keeps an IMAGE as float32 in [0, 1] (LoadImage divides by 255) and a MASK as float32 [B, H, W]; the
emulator keeps IMAGEs as RGB PIL images and MASKs as PIL images of mode "L" (0..255, read as v/255) or "F"
(float32, read as is, which is what the mask nodes here produce so a fractional mask keeps its value).
An image goes back to 8 bits as SaveImage writes it: clip(255 * v, 0, 255) truncated, so a pixel that passes
through unchanged keeps its exact byte value (v/255*255 rounds back to v in float32 for every byte).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Array = NDArray[np.float32]


def image_array(images: Sequence[Image.Image]) -> Array:
    """[B, C, H, W] in [0, 1], as ComfyUI's IMAGE moved to channels-first (the composite works that way)."""
    stack = np.stack([np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0) for img in images])
    return np.ascontiguousarray(stack.transpose(0, 3, 1, 2))


def to_images(array: Array) -> list[Image.Image]:
    """[B, C, H, W] back to RGB images, as SaveImage converts."""
    data = np.clip(np.float32(255.0) * array, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return [Image.fromarray(np.ascontiguousarray(frame), "RGB") for frame in data]


def mask_array(masks: Sequence[Image.Image]) -> Array:
    """[B, H, W] float32."""
    return np.stack([_mask(m) for m in masks])


def _mask(mask: Image.Image) -> Array:
    if mask.mode == "F":
        return np.asarray(mask, dtype=np.float32)
    return np.asarray(mask.convert("L"), dtype=np.float32) / np.float32(255.0)


def to_masks(array: Array) -> list[Image.Image]:
    """[B, H, W] float32 to mode "F" images (values kept exactly)."""
    return [Image.fromarray(np.ascontiguousarray(m, dtype=np.float32), "F") for m in array]


def _axis(in_size: int, out_size: int) -> tuple[NDArray[np.intp], NDArray[np.intp], Array, Array]:
    """torch's upsample_bilinear2d indices and weights along one axis (align_corners=False, no antialias)."""
    scale = np.float32(in_size / out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(src.astype(np.intp), in_size - 1)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    lam1 = (src - i0).astype(np.float32)
    return i0, i1, np.float32(1.0) - lam1, lam1


def bilinear(array: Array, height: int, width: int) -> Array:
    """`torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear")` on [..., H, W]: the same
    indices and weights; torch's CPU kernel sums in another order, so a value may differ in its last bits
    (~1e-6) and a saved byte by one. Same size: the input itself, as torch (exact)."""
    in_h, in_w = array.shape[-2:]
    if (in_h, in_w) == (height, width):
        return array.copy()
    h0, h1, hl0, hl1 = _axis(in_h, height)
    w0, w1, wl0, wl1 = _axis(in_w, width)
    top = array[..., h0, :][..., w0] * wl0 + array[..., h0, :][..., w1] * wl1
    bottom = array[..., h1, :][..., w0] * wl0 + array[..., h1, :][..., w1] * wl1
    out = top * hl0[:, None] + bottom * hl1[:, None]
    return out.astype(np.float32)


def repeat_to_batch(array: Array, batch: int) -> Array:
    """comfy.utils.repeat_to_batch_size: cut to the batch, or repeat the whole batch and cut."""
    if array.shape[0] >= batch:
        return array[:batch]
    reps = math.ceil(batch / array.shape[0])
    return np.concatenate([array] * reps)[:batch]


def composite(
    destination: Array, source: Array, x: int, y: int, mask: Array | None, resize_source: bool
) -> Array:
    """comfy_extras/nodes_mask.py `composite` with multiplier 1 (ImageCompositeMasked), on [B, C, H, W]:
    the source (or its masked part) laid over the destination at (x, y); everything else is the
    destination's own pixels."""
    destination = destination.copy()
    if resize_source:
        source = bilinear(source, destination.shape[-2], destination.shape[-1])
    source = repeat_to_batch(source, destination.shape[0])
    x = max(-source.shape[-1], min(x, destination.shape[-1]))
    y = max(-source.shape[-2], min(y, destination.shape[-2]))
    left, top = x, y
    right, bottom = left + source.shape[-1], top + source.shape[-2]
    if mask is None:
        weights = np.ones_like(source)
    else:
        weights = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
        weights = repeat_to_batch(bilinear(weights, source.shape[-2], source.shape[-1]), source.shape[0])
    visible_w = destination.shape[-1] - left + min(0, x)
    visible_h = destination.shape[-2] - top + min(0, y)
    weights = weights[:, :, :visible_h, :visible_w]
    inverse = np.ones_like(weights) - weights
    src_part = weights * source[..., :visible_h, :visible_w]
    dst_part = inverse * destination[..., top:bottom, left:right]
    destination[..., top:bottom, left:right] = src_part + dst_part
    return destination


def grow(mask: Array, expand: int, tapered_corners: bool) -> Array:
    """GrowMask: `abs(expand)` grey dilations (erosions when negative) with a 3x3 footprint, a cross when
    tapered. scipy's default border (reflect) never adds a value, so only the pixels inside count."""
    cross = tapered_corners
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if not (cross and dy and dx)]
    pick = np.minimum if expand < 0 else np.maximum
    out = []
    for m in mask:
        current = m.copy()
        for _ in range(abs(expand)):
            padded = np.pad(current, 1, mode="edge")
            h, w = current.shape
            shifted = [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in offsets]
            current = pick.reduce(shifted)
        out.append(current)
    return np.stack(out).astype(np.float32)


def box_any(mask: Array, size: int) -> Array:
    """VAEEncodeForInpaint's grown noise mask: clamp(conv2d(mask.round(), ones(size, size),
    padding=ceil((size - 1) / 2)), 0, 1) on [B, H, W] (the output is one larger when size is even)."""
    pad = math.ceil((size - 1) / 2)
    rounded = np.round(mask)
    padded = np.pad(rounded, ((0, 0), (pad, pad), (pad, pad)))
    out_h, out_w = padded.shape[1] - size + 1, padded.shape[2] - size + 1
    total = np.zeros((mask.shape[0], out_h, out_w), dtype=np.float32)
    for dy in range(size):
        for dx in range(size):
            total += padded[:, dy : dy + out_h, dx : dx + out_w]
    return np.clip(total, 0, 1).astype(np.float32)
