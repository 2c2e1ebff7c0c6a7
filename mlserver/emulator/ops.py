"""What each node does in the emulator: no tensors, small stand-in values, real files, real waiting.

Costs a client can observe are kept: a sampler step takes `step_ms` (at 512x512, scaled by pixels and batch)
and reports progress; loading a checkpoint, a LoRA or a ControlNet takes its load time when it changes.
A model file that is there is read as ComfyUI reads it (`weights.py`): an empty or corrupt one fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageColor, ImageFilter, ImageOps

from mlserver.emulator.images import RenderSpec, render, save_png
from mlserver.emulator.nodes import TAESD
from mlserver.emulator.previews import fitted, step_image

if TYPE_CHECKING:
    from mlserver.emulator.executor import Emulator, RunContext


class Interrupted(Exception):
    """The prompt was interrupted (POST /interrupt)."""


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError (fault injection)."""


OutOfMemoryError.__module__ = "torch"


@dataclass(frozen=True)
class Model:
    checkpoint: str
    loras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cond:
    text: str
    loras: tuple[str, ...]
    control: Image.Image | None = None
    strength: float = 0.0


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch: int
    spec: RenderSpec | None = None
    noise_mask: tuple[Image.Image, ...] | None = None  # SetLatentNoiseMask, the inpaint encoders


Outputs = tuple[Any, ...]
Op = Callable[["RunContext", dict[str, Any]], Awaitable[tuple[Outputs, dict[str, Any] | None]]]
OPS: dict[str, Op] = {}


def op(name: str) -> Callable[[Op], Op]:
    def register(fn: Op) -> Op:
        OPS[name] = fn
        return fn

    return register


async def _load(ctx: RunContext, kind: str, name: str) -> None:
    await ctx.emulator.load_model(kind, name)


@op("CheckpointLoaderSimple")
async def checkpoint(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    await _load(ctx, "checkpoint", i["ckpt_name"])
    model = Model(i["ckpt_name"])
    return (model, model, model), None


@op("LoraLoader")
async def lora(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    if i["strength_model"] == 0 and i["strength_clip"] == 0:
        return (i["model"], i["clip"]), None
    await _load(ctx, "lora", i["lora_name"])
    return (
        replace(i["model"], loras=(*i["model"].loras, i["lora_name"])),
        replace(i["clip"], loras=(*i["clip"].loras, i["lora_name"])),
    ), None


@op("LoraLoaderModelOnly")
async def lora_model_only(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    if i["strength_model"] == 0:  # ComfyUI's LoraLoader with both strengths 0: nothing is read
        return (i["model"],), None
    await _load(ctx, "lora", i["lora_name"])
    return (replace(i["model"], loras=(*i["model"].loras, i["lora_name"])),), None


@op("CLIPSetLastLayer")
async def clip_last_layer(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return (i["clip"],), None


@op("CLIPTextEncode")
async def encode(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return (Cond(str(i["text"]), i["clip"].loras),), None


@op("VAELoader")
async def vae_loader(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    name = str(i["vae_name"])
    if name in TAESD:  # the first encoder and decoder file of that name in vae_approx, as ComfyUI
        approx = ctx.emulator.folders.list_models("vae_approx")
        for part in ("encoder", "decoder"):
            await ctx.emulator.read_weights(
                "vae_approx", next(a for a in approx if a.startswith(f"{name}_{part}."))
            )
    elif name != "pixel_space":  # a VAE made of nothing but pixels: no file
        await ctx.emulator.read_weights("vae", name)
    return (Model(name),), None


@op("EmptyLatentImage")
async def empty_latent(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return (Latent(i["width"], i["height"], i["batch_size"]),), None


@op("EmptyImage")
async def empty_image(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    colour = f"#{i['color']:06x}"
    return ([Image.new("RGB", (i["width"], i["height"]), ImageColor.getrgb(colour))] * i["batch_size"],), None


async def sample(
    ctx: RunContext, model: Model, positive: Cond, latent: Latent, seed: int, steps: int
) -> Latent:
    pixels = (latent.width * latent.height * latent.batch) / (512 * 512)
    step_s = ctx.emulator.config.step_ms / 1000 * pixels
    spec = RenderSpec(
        latent.width,
        latent.height,
        seed,
        positive.text,
        model.loras,
        model.checkpoint,
        positive.control,
        positive.strength,
    )
    preview = Previewer(spec, ctx.emulator.config.preview_size)
    for step in range(1, steps + 1):
        await asyncio.sleep(step_s)
        ctx.emulator.on_step()
        if step == 1:
            ctx.emulator.maybe_fail()
        ctx.check_interrupt()
        await ctx.progress(step, steps, partial(preview.jpeg, step, steps))
    return replace(latent, spec=spec)


class Previewer:
    """A sampler's live previews: its stand-in render at preview size, drawn once, blurred per step."""

    def __init__(self, spec: RenderSpec, max_size: int) -> None:
        self.spec = spec
        self.max_size = max_size
        self.base: Image.Image | None = None

    def jpeg(self, step: int, steps: int) -> bytes:
        if self.base is None:
            self.base = fitted(render(self.spec, 0), self.max_size)
        return step_image(self.base, step, steps)


@op("KSampler")
async def ksampler(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return (await sample(ctx, i["model"], i["positive"], i["latent_image"], i["seed"], i["steps"]),), None


@op("KSamplerAdvanced")
async def ksampler_advanced(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    steps = max(0, min(i["end_at_step"], i["steps"]) - i["start_at_step"])
    return (await sample(ctx, i["model"], i["positive"], i["latent_image"], i["noise_seed"], steps),), None


@op("VAEDecode")
async def vae_decode(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    latent: Latent = i["samples"]
    spec = latent.spec or RenderSpec(latent.width, latent.height, 0, "", (), i["vae"].checkpoint)
    await asyncio.sleep(ctx.emulator.config.step_ms / 1000 * latent.width * latent.height / (512 * 512))
    images = await asyncio.to_thread(lambda: [render(spec, n) for n in range(latent.batch)])
    return (images,), None


@op("VAEEncode")
async def vae_encode(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    img = i["pixels"][0]
    return (Latent(img.width, img.height, len(i["pixels"])),), None


@op("LatentUpscale")
async def latent_upscale(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    latent: Latent = i["samples"]
    w = i["width"] or round(latent.width * i["height"] / max(1, latent.height))
    h = i["height"] or round(latent.height * i["width"] / max(1, latent.width))
    return (replace(latent, width=max(64, w), height=max(64, h)),), None


@op("LatentUpscaleBy")
async def latent_upscale_by(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    latent: Latent = i["samples"]
    return (
        replace(
            latent, width=round(latent.width * i["scale_by"]), height=round(latent.height * i["scale_by"])
        ),
    ), None


def _save_name(folder: Path, prefix: str, width: int, height: int) -> tuple[Path, str, str, int]:
    now = datetime.now()
    for key, value in {
        "%width%": width,
        "%height%": height,
        "%year%": now.year,
        "%month%": f"{now.month:02}",
        "%day%": f"{now.day:02}",
        "%hour%": f"{now.hour:02}",
        "%minute%": f"{now.minute:02}",
        "%second%": f"{now.second:02}",
    }.items():
        prefix = prefix.replace(key, str(value))
    subfolder, _, filename = prefix.rpartition("/")
    full = (folder / subfolder).resolve()
    if os.path.commonpath([folder.resolve(), full]) != str(folder.resolve()):
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {full}\n         output_dir: {folder}"
            f"\n         commonpath: {os.path.commonpath([folder.resolve(), full])}"
        )
    pattern = re.compile(rf"^{re.escape(filename)}_(\d+)_")
    counters = [
        int(m.group(1)) for p in (full.iterdir() if full.is_dir() else []) if (m := pattern.match(p.name))
    ]
    return full, subfolder, filename, max(counters, default=0) + 1


async def save_images(
    ctx: RunContext, images: list[Image.Image], folder: Path, prefix: str, type_: str, level: int
) -> dict[str, Any]:
    first = images[0] if images else Image.new("RGB", (1, 1))
    full, subfolder, filename, counter = _save_name(folder, prefix, first.width, first.height)
    results = []
    for n, img in enumerate(images):
        name = f"{filename.replace('%batch_num%', str(n))}_{counter:05}_.png"
        extra = (
            ctx.extra_data.get("extra_pnginfo")
            if isinstance(ctx.extra_data.get("extra_pnginfo"), dict)
            else None
        )
        await asyncio.to_thread(save_png, img, full / name, ctx.prompt, extra, level)
        results.append({"filename": name, "subfolder": subfolder, "type": type_})
        counter += 1
    return {"images": results}


@op("SaveImage")
async def save_image(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, dict[str, Any]]:
    return (), await save_images(
        ctx, i["images"], ctx.emulator.folders.output, str(i["filename_prefix"]), "output", 4
    )


@op("PreviewImage")
async def preview_image(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, dict[str, Any]]:
    prefix = "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    return (), await save_images(ctx, i["images"], ctx.emulator.folders.temp, prefix, "temp", 1)


@op("LoadImage")
async def load_image(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    path = ctx.emulator.folders.annotated(str(i["image"]))

    def _open() -> tuple[Image.Image, Image.Image]:
        with Image.open(path) as opened:
            img = ImageOps.exif_transpose(opened)
            # ComfyUI's mask: 1 - alpha/255 in float32 where the image has alpha (a palette image's
            # transparency included), else a 64x64 zero mask; kept as a float ("F") image, exactly
            alpha = None
            if "A" in img.getbands():
                alpha = img.getchannel("A")
            elif img.mode == "P" and "transparency" in img.info:
                alpha = img.convert("RGBA").getchannel("A")
            if alpha is None:
                return img.convert("RGB"), Image.new("F", (64, 64), 0.0)
            values = np.asarray(alpha, dtype=np.float32) / np.float32(255.0)
            return img.convert("RGB"), Image.fromarray(np.float32(1.0) - values, "F")

    img, mask = await asyncio.to_thread(_open)
    return ([img], [mask]), None


@op("ImageInvert")
async def invert(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return ([ImageOps.invert(img.convert("RGB")) for img in i["image"]],), None


def _scale(img: Image.Image, w: int, h: int, crop: str) -> Image.Image:
    if w == 0 and h == 0:
        return img
    w = w or round(img.width * h / img.height)
    h = h or round(img.height * w / img.width)
    if crop == "center":
        return ImageOps.fit(img, (w, h), Image.Resampling.LANCZOS)
    return img.resize((w, h), Image.Resampling.LANCZOS)


@op("ImageScale")
async def image_scale(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return ([_scale(img, i["width"], i["height"], i["crop"]) for img in i["image"]],), None


@op("ImageScaleBy")
async def image_scale_by(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    out = [
        _scale(img, round(img.width * i["scale_by"]), round(img.height * i["scale_by"]), "disabled")
        for img in i["image"]
    ]
    return (out,), None


@op("Canny")
async def canny(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    return ([img.convert("L").filter(ImageFilter.FIND_EDGES).convert("RGB") for img in i["image"]],), None


@op("ControlNetLoader")
async def controlnet_loader(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    await _load(ctx, "controlnet", i["control_net_name"])
    return (i["control_net_name"],), None


@op("ControlNetApply")
async def controlnet_apply(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    if i["strength"] == 0:
        return (i["conditioning"],), None
    return (replace(i["conditioning"], control=i["image"][0], strength=i["strength"]),), None


@op("ControlNetApplyAdvanced")
async def controlnet_apply_advanced(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    if i["strength"] == 0:
        return (i["positive"], i["negative"]), None
    control = {"control": i["image"][0], "strength": i["strength"]}
    return (replace(i["positive"], **control), replace(i["negative"], **control)), None


@op("UpscaleModelLoader")
async def upscale_loader(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    name = str(i["model_name"])
    recorded = ctx.emulator.nodes.recorded_files.get("UpscaleModelLoader", {}).get("model_name", [])
    if not ctx.emulator.folders.model_exists("upscale_models", name) and name not in recorded:
        raise FileNotFoundError(
            f"Model in folder 'upscale_models' with filename '{i['model_name']}' not found."
        )
    await ctx.emulator.read_weights("upscale_models", str(i["model_name"]))
    return (i["model_name"],), None


@op("CLIPVisionLoader")
async def clip_vision_loader(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    """The file's name stands for the CLIP vision model (IPAdapter's classes take it as an opaque value)."""
    name = str(i["clip_name"])
    await ctx.emulator.read_weights("clip_vision", name)
    return (name,), None


DEFAULT_UPSCALE = 4  # ESRGAN's
UPSCALE_FACTOR = re.compile(r"(?<![0-9])(?:([1-8])x|x([1-8]))(?![0-9])", re.IGNORECASE)


def upscale_factor(model_name: str) -> int:
    """How much an upscale model enlarges: what its file name says (2x, x2, 8x ...), else 4."""
    found = UPSCALE_FACTOR.search(Path(model_name).name)
    return int(found.group(1) or found.group(2)) if found else DEFAULT_UPSCALE


@op("ImageUpscaleWithModel")
async def upscale(ctx: RunContext, i: dict[str, Any]) -> tuple[Outputs, None]:
    out = []
    for img in i["image"]:
        tiles = max(1, (img.width // 512 + 1) * (img.height // 512 + 1))
        for t in range(tiles):
            await asyncio.sleep(ctx.emulator.config.step_ms / 1000)
            ctx.check_interrupt()
            await ctx.progress(t + 1, tiles)
        factor = upscale_factor(str(i["upscale_model"]))
        out.append(img.resize((img.width * factor, img.height * factor), Image.Resampling.LANCZOS))
    return (out,), None


def supported(emulator: Emulator) -> set[str]:
    return set(OPS)
