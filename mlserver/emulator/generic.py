"""Running a class the emulator knows only from a recorded `/object_info`: by its declared RETURN_TYPES.

- IMAGE: a labelled stand-in image (the input image, resized, when there is one); MASK: a mask of the
  image's size; LATENT: a latent (the emulator's latents carry pixel sizes).
- Sizes follow the inputs where the meaning is clear: an input IMAGE/LATENT/MASK's size, `width`/`height`,
  `scale_by` (and its usual synonyms), `megapixels`, an upscale model (×4 unless its file name says 2x, 8x
  ...); the batch follows `batch_size` or `amount` (a repeat). Anything else keeps the input's size.
- MODEL/CLIP/VAE/CONDITIONING become the emulator's own stand-ins (an input of the same type passes
  through), so the classes it implements can consume them; other types are opaque tokens.
- A class with a `steps` input samples: `steps` progress reports at the emulator's step time.
- An output node with an IMAGE input saves like SaveImage (with `filename_prefix`) or PreviewImage.
"""

from __future__ import annotations

import asyncio
import random
import re
import string
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from PIL import Image

from contract.comfy_spec import InputSpec, declared_inputs, is_output_node, output_types
from mlserver.emulator.images import diagnostic, diagnostic_mask
from mlserver.emulator.nodes import MAX_RESOLUTION
from mlserver.emulator.ops import Cond, Latent, Model, Op, Outputs, sample, save_images, upscale_factor

if TYPE_CHECKING:
    from mlserver.emulator.executor import RunContext

DEFAULT_SIDE = 512
SCALE_INPUTS = ("scale_by", "upscale_by", "scale_factor", "scale", "resize_scale")
MODEL_FILE = re.compile(r"\.(safetensors|pth|pt|ckpt|bin|onnx|gguf|sft)$", re.IGNORECASE)
PRIMITIVE_DEFAULTS: dict[str, Any] = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}


@dataclass(frozen=True)
class Token:
    """An opaque value of a type the emulator has no stand-in for (IPADAPTER, CLIP_VISION, ...)."""

    type: str
    class_type: str
    node_id: str
    name: str = ""

    def __str__(self) -> str:
        return self.name or f"{self.type} from {self.class_type} #{self.node_id}"


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    batch: int


def _clamp(side: float) -> int:
    return max(1, min(MAX_RESOLUTION, int(side)))


class Call:
    """One run of a recorded class: its declared inputs sorted by type, and the sizes they imply."""

    def __init__(self, ctx: RunContext, info: dict[str, Any], inputs: dict[str, Any]) -> None:
        self.ctx = ctx
        self.info = info
        self.class_type = str(info.get("name") or ctx.prompt[ctx.node_id or ""]["class_type"])
        self.node_id = ctx.node_id or ""
        self.specs: dict[str, InputSpec] = declared_inputs(info)
        self.inputs = inputs

    def of_type(self, type_: str) -> list[Any]:
        return [v for k, v in self.inputs.items() if k in self.specs and self.specs[k].type == type_]

    def first(self, type_: str, kind: Any = object) -> Any:
        return next((v for v in self.of_type(type_) if isinstance(v, kind)), None)

    def literal(self, name: str, kind: Any) -> Any:
        value = self.inputs.get(name)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    def model_file(self) -> str | None:
        """The first literal that names a model file (a loader's choice)."""
        return next((v for v in self.inputs.values() if isinstance(v, str) and MODEL_FILE.search(v)), None)

    # --- sizes ------------------------------------------------------------------------------------------
    @cached_property
    def source(self) -> tuple[Size, list[Image.Image]]:
        """The size the outputs start from, and the images they are drawn from."""
        images = self.first("IMAGE", list)
        if images and isinstance(images[0], Image.Image):
            return Size(images[0].width, images[0].height, len(images)), images
        latent = self.first("LATENT", Latent)
        if latent is not None:
            return Size(latent.width, latent.height, latent.batch), []
        masks = self.first("MASK", list)
        if masks and isinstance(masks[0], Image.Image):
            return Size(masks[0].width, masks[0].height, len(masks)), []
        loaded = self.input_image()
        if loaded is not None:
            return Size(loaded.width, loaded.height, 1), [loaded]
        return Size(DEFAULT_SIDE, DEFAULT_SIDE, 1), []

    def input_image(self) -> Image.Image | None:
        """The file an `image` literal names in the input folder (a loader of images)."""
        name = self.inputs.get("image")
        if not isinstance(name, str) or not self.ctx.emulator.folders.input_exists(name):
            return None
        with Image.open(self.ctx.emulator.folders.annotated(name)) as img:
            return img.convert("RGB")

    def upscale_factor(self) -> int | None:
        """×N for an upscale with a model: the model file's name says 2x/x2/8x..., else 4 (ESRGAN's)."""
        model = self.first("UPSCALE_MODEL")
        name = str(model) if model is not None else None
        if name is None and "upscale" in self.class_type.lower():
            name = self.model_file()
        return None if name is None else upscale_factor(name)

    def size(self) -> Size:
        size, _ = self.source
        w, h, batch = size.width, size.height, size.batch
        width, height = self.literal("width", int), self.literal("height", int)
        if width is not None or height is not None:
            width, height = width or 0, height or 0
            if width or height:  # 0 keeps the aspect ratio, as ImageScale
                w, h = width or round(w * height / max(1, h)), height or round(h * width / max(1, w))
        scale = next(
            (self.literal(k, int | float) for k in SCALE_INPUTS if self.literal(k, int | float)), None
        )
        megapixels = self.literal("megapixels", int | float)
        if megapixels:  # ImageScaleToTotalPixels: the same shape at that many pixels
            scale = (megapixels * 1024 * 1024 / max(1, w * h)) ** 0.5
        factor = scale if scale is not None else self.upscale_factor()
        if factor is not None:
            w, h = round(w * factor), round(h * factor)
        batch = self.literal("batch_size", int) or batch * (self.literal("amount", int) or 1)
        return Size(_clamp(w), _clamp(h), max(1, batch))

    # --- outputs ----------------------------------------------------------------------------------------
    def image(self, size: Size) -> list[Image.Image]:
        _, sources = self.source
        lines = [self.class_type, f"node {self.node_id}"]
        salt = f"{self.class_type}:{sorted((k, str(v)) for k, v in self.inputs.items())}"
        return [
            diagnostic(
                size.width, size.height, lines, f"{salt}:{n}", sources[n % len(sources)] if sources else None
            )
            for n in range(size.batch)
        ]

    def value(self, type_: str, size: Size, latent: Latent | None) -> Any:
        if type_ == "IMAGE":
            return self.image(size)
        if type_ == "MASK":
            return [diagnostic_mask(size.width, size.height) for _ in range(size.batch)]
        if type_ == "LATENT":
            base = latent or self.first("LATENT", Latent) or Latent(size.width, size.height, size.batch)
            return replace(base, width=size.width, height=size.height, batch=size.batch)
        if type_ in ("MODEL", "CLIP", "VAE"):
            return self.first(type_, Model) or Model(self.model_file() or self.class_type)
        if type_ == "CONDITIONING":
            cond = self.first("CONDITIONING", Cond)
            if cond is not None:
                return cond
            clip = self.first("CLIP", Model)
            text = next((v for v in self.of_type("STRING") if isinstance(v, str)), "")
            return Cond(text, clip.loras if clip else ())
        if type_ in PRIMITIVE_DEFAULTS:
            return next(iter(self.of_type(type_)), PRIMITIVE_DEFAULTS[type_])
        passed = self.of_type(type_)
        if passed:
            return passed[0]
        if type_ in ("UPSCALE_MODEL", "CONTROL_NET"):  # the emulator's own loaders give the file name
            return self.model_file() or self.class_type
        return Token(str(type_), self.class_type, self.node_id, self.model_file() or "")

    async def steps(self, size: Size) -> Latent | None:
        """Sample for `steps` steps; a sampler fed by the emulator's own stand-ins yields a real render."""
        steps = self.literal("steps", int)
        if not steps or steps < 1:
            return None
        model, positive = self.first("MODEL", Model), self.inputs.get("positive")
        latent = self.first("LATENT", Latent)
        if model is not None and isinstance(positive, Cond) and latent is not None:
            seed = self.literal("seed", int) or self.literal("noise_seed", int) or 0
            return await sample(self.ctx, model, positive, latent, seed, steps)
        step_s = self.ctx.emulator.config.step_ms / 1000 * size.width * size.height * size.batch / 512**2
        for step in range(1, steps + 1):
            await asyncio.sleep(step_s)
            self.ctx.emulator.on_step()
            if step == 1:
                self.ctx.emulator.maybe_fail()
            self.ctx.check_interrupt()
            await self.ctx.progress(step, steps)
        return None

    async def save(self) -> dict[str, Any] | None:
        images = self.first("IMAGE", list)
        if not is_output_node(self.info) or not images:
            return None
        folders = self.ctx.emulator.folders
        if "filename_prefix" in self.inputs:
            prefix = str(self.inputs["filename_prefix"])
            return await save_images(self.ctx, images, folders.output, prefix, "output", 4)
        prefix = "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        return await save_images(self.ctx, images, folders.temp, prefix, "temp", 1)


async def run(
    ctx: RunContext, info: dict[str, Any], inputs: dict[str, Any]
) -> tuple[Outputs, dict[str, Any] | None]:
    call = Call(ctx, info, inputs)
    size = call.size()
    latent = await call.steps(size)
    outputs = tuple(call.value(t, size, latent) for t in output_types(info))
    return outputs, await call.save()


def generic_op(info: dict[str, Any]) -> Op:
    async def op(ctx: RunContext, inputs: dict[str, Any]) -> tuple[Outputs, dict[str, Any] | None]:
        return await run(ctx, info, inputs)

    return op
