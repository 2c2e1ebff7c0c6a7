"""Core mask and inpaint nodes of ComfyUI 0.3.64, run with real pixels (see pixels.py).

Their specs are not in the emulator's catalogue: they come from the recorded core `/object_info`
(tests/data/object_info/comfyui-0.3.64.json, loaded by default), so a graph validates exactly as on the real
server; what they do is here. Composites are exact, so "the keep mask is untouched" and "outside the edit
mask nothing changed" can be asserted on the emulator's output bytes.

- ImageCompositeMasked (comfy_extras/nodes_mask.py): destination, source, x, y, resize_source, mask?;
- ImageToMask, MaskToImage, InvertMask, GrowMask: as ComfyUI's mask nodes;
- SetLatentNoiseMask, VAEEncodeForInpaint, InpaintModelConditioning: the latent's size (pixels cropped to a
  multiple of 8, centred, as ComfyUI does) and its noise mask; the conditionings pass through.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from mlserver.emulator import pixels
from mlserver.emulator.ops import Latent, Outputs, op

if TYPE_CHECKING:
    from mlserver.emulator.executor import RunContext

CHANNELS = ("red", "green", "blue", "alpha")
DOWNSCALE = 8  # SD1.5's VAE: vae.downscale_ratio


@op("ImageCompositeMasked")
async def image_composite_masked(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    destination = pixels.image_array(i["destination"])
    source = pixels.image_array(i["source"])
    mask = pixels.mask_array(i["mask"]) if i.get("mask") is not None else None
    out = pixels.composite(destination, source, int(i["x"]), int(i["y"]), mask, bool(i["resize_source"]))
    return (pixels.to_images(out),), None


@op("ImageToMask")
async def image_to_mask(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    index = CHANNELS.index(str(i["channel"]))
    if index > 2:  # the emulator's images are RGB, as an IMAGE from LoadImage is
        raise IndexError("index 3 is out of bounds for dimension 3 with size 3")
    images = pixels.image_array(i["image"])
    return (pixels.to_masks(images[:, index]),), None


@op("MaskToImage")
async def mask_to_image(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    mask = pixels.mask_array(i["mask"])
    return (pixels.to_images(np.repeat(mask[:, None], 3, axis=1)),), None


@op("InvertMask")
async def invert_mask(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return (pixels.to_masks(np.float32(1.0) - pixels.mask_array(i["mask"])),), None


@op("GrowMask")
async def grow_mask(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    grown = pixels.grow(pixels.mask_array(i["mask"]), int(i["expand"]), bool(i["tapered_corners"]))
    return (pixels.to_masks(grown),), None


@op("SetLatentNoiseMask")
async def set_latent_noise_mask(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return (replace(i["samples"], noise_mask=tuple(i["mask"])),), None


def _inpaint_crop(images: list[Any], masks: list[Any]) -> tuple[int, int, np.ndarray]:
    """The pixels' size cut down to a multiple of 8 and the mask resized to the pixels, cut the same way
    (centred: ComfyUI drops `(size % 8) // 2` rows and columns first)."""
    width, height = images[0].width, images[0].height
    w8, h8 = width // DOWNSCALE * DOWNSCALE, height // DOWNSCALE * DOWNSCALE
    mask = pixels.bilinear(pixels.mask_array(masks)[:, None], height, width)[:, 0]
    top, left = (height % DOWNSCALE) // 2, (width % DOWNSCALE) // 2
    return w8, h8, mask[:, top : top + h8, left : left + w8]


@op("VAEEncodeForInpaint")
async def vae_encode_for_inpaint(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    w8, h8, mask = _inpaint_crop(i["pixels"], i["mask"])
    grow_by = int(i.get("grow_mask_by", 6))
    noise = mask if grow_by == 0 else pixels.box_any(mask, grow_by)
    noise = np.round(noise[:, :h8, :w8]).astype(np.float32)
    latent = Latent(w8, h8, len(i["pixels"]), noise_mask=tuple(pixels.to_masks(noise)))
    return (latent,), None


@op("InpaintModelConditioning")
async def inpaint_model_conditioning(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    w8, h8, mask = _inpaint_crop(i["pixels"], i["mask"])
    noise_mask = tuple(pixels.to_masks(mask)) if i.get("noise_mask", True) else None
    latent = Latent(w8, h8, len(i["pixels"]), noise_mask=noise_mask)
    return (i["positive"], i["negative"], latent), None
