"""A style photo that is a sketch is refused; a pale, nearly colourless room photo is not (issue 17)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backend.images import ImageRejected, looks_like_sketch, process_style_photo
from tests.factories import sketch_png
from tests.support.product import composition_png, png, style_photo_png

LIMITS = {"max_pixels": 50_000_000, "max_side": 4096}


def white_room(side: int = 512) -> bytes:
    """A minimalist white room: most of it a white wall (low saturation, one tone), a grey sofa and a pale
    floor in blocks, soft shading: what a sketch test that only counts paper tone would refuse."""
    _, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    img = np.stack([236 + 8 * x, 236 + 8 * x, 234 + 8 * x], axis=-1)
    img[int(side * 0.8) :] = (200, 196, 190)
    img[int(side * 0.55) : int(side * 0.8), int(side * 0.25) : int(side * 0.75)] = (150, 150, 152)
    img += np.random.default_rng(5).normal(0, 2, img.shape)
    return png(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"))


def blank(side: int = 512) -> bytes:
    return png(Image.new("RGB", (side, side), (250, 250, 248)))


def pencil_plan(side: int = 512) -> bytes:
    """A floor plan in pencil on grey paper: thin mid-grey lines, many of them."""
    img = Image.new("RGB", (side, side), (225, 225, 222))
    draw = ImageDraw.Draw(img)
    for k in range(0, side, 32):
        draw.line((k, 0, side - k, side), fill=(120, 120, 120), width=1)
    return png(img)


@pytest.mark.parametrize(
    "data", [sketch_png(), sketch_png(dark_on_light=False), composition_png(), pencil_plan(), blank()],
    ids=["dark-lines", "light-lines", "floor-and-wall-lines", "pencil-plan", "blank-page"],
)  # fmt: skip
def test_a_sketch_sent_as_a_style_photo_is_refused_with_a_clear_message(data: bytes) -> None:
    with pytest.raises(ImageRejected) as caught:
        process_style_photo(data, **LIMITS)
    assert caught.value.code == "style_photo_is_sketch"
    assert "looks like a sketch" in str(caught.value) and "upload a photo of a room" in str(caught.value)


@pytest.mark.parametrize("data", [white_room(), style_photo_png()], ids=["white-room", "warm-room"])
def test_a_photo_is_kept_even_when_pale_and_colourless(data: bytes) -> None:
    out = process_style_photo(data, **LIMITS)
    assert (out.width, out.height) == (512, 512)
    assert not looks_like_sketch(Image.open(io.BytesIO(data)).convert("RGB"))
