"""BLIP captions for the training images (Hugging Face transformers' `BlipForConditionalGeneration`).

The model id is a setting (`CaptionSettings.model_id`, default BLIP-large captioning; any local folder
written by `save_pretrained` works, which is how the tests run the real code on a tiny random BLIP).
Images are captioned in batches on the GPU when there is one (fp16), else on the CPU. A kohya caption
is the style's trigger words first, then BLIP's sentence: `indochine style, a living room with ...`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

logger = logging.getLogger(__name__)

DEFAULT_BLIP_MODEL = "Salesforce/blip-image-captioning-large"
# Words BLIP-large is known to invent for people/objects it cannot name ("arafed", "araffe").
BLIP_ARTIFACTS = re.compile(r"\b(arafed|araffe|arafe)\b\s*", re.IGNORECASE)


class Captioner(Protocol):
    """Anything that turns images into one caption each (BLIP here; a fake in a test)."""

    def caption(self, images: Sequence[Image.Image]) -> list[str]: ...


@dataclass(frozen=True)
class CaptionSettings:
    model_id: str = DEFAULT_BLIP_MODEL
    device: str = "auto"  # auto: cuda, then mps, then cpu
    batch_size: int = 8
    max_new_tokens: int = 40
    min_new_tokens: int = 5
    num_beams: int = 3
    prompt: str = ""  # conditional captioning ("a photography of"); stripped from the caption
    local_files_only: bool = False


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def clean_caption(text: str, prompt: str = "") -> str:
    """Lower-case, one line, prompt and BLIP artifacts removed, no trailing punctuation."""
    text = " ".join(text.split()).strip().lower()
    prompt = " ".join(prompt.split()).strip().lower()
    if prompt and text.startswith(prompt):
        text = text[len(prompt) :]
    text = BLIP_ARTIFACTS.sub("", text)
    return " ".join(text.split()).strip(" ,.;:")


def kohya_caption(trigger: str, caption: str) -> str:
    """The caption file's one line: trigger words first (kohya's keep_tokens keeps them in front)."""
    parts = [p for p in (trigger.strip(), caption.strip()) if p]
    return ", ".join(parts)


class BlipCaptioner:
    """Loads the processor and model once; `caption` runs them over batches."""

    def __init__(self, settings: CaptionSettings | None = None) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.settings = settings or CaptionSettings()
        self.device = pick_device(self.settings.device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        model_id = self.settings.model_id
        if model_id.startswith((".", "/", "~")) and not Path(model_id).expanduser().is_dir():
            raise FileNotFoundError(f"caption model folder {model_id} does not exist")
        kwargs: dict[str, Any] = {"local_files_only": self.settings.local_files_only}
        try:
            # transformers' own annotations are partial (untyped batch_decode, a decorated `to`): Any here.
            self.processor: Any = BlipProcessor.from_pretrained(model_id, **kwargs)
            model: Any = BlipForConditionalGeneration.from_pretrained(model_id, dtype=self.dtype, **kwargs)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot load the BLIP model {model_id!r}: {exc}") from exc
        self.model: Any = model.to(self.device).eval()
        logger.info(
            "BLIP captioner ready",
            extra={"action": "blip_loaded", "model_id": self.settings.model_id, "device": str(self.device)},
        )

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        captions: list[str] = []
        size = max(1, self.settings.batch_size)
        for start in range(0, len(images), size):
            captions += self._caption_batch(images[start : start + size])
        return captions

    @torch.inference_mode()
    def _caption_batch(self, images: Sequence[Image.Image]) -> list[str]:
        s = self.settings
        rgb = [im.convert("RGB") for im in images]
        text = [s.prompt] * len(rgb) if s.prompt else None
        inputs = self.processor(images=rgb, text=text, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        out = self.model.generate(
            **inputs,
            max_new_tokens=s.max_new_tokens,
            min_new_tokens=min(s.min_new_tokens, s.max_new_tokens),
            num_beams=s.num_beams,
        )
        decoded = self.processor.batch_decode(out, skip_special_tokens=True)
        return [clean_caption(str(t), s.prompt) for t in decoded]
