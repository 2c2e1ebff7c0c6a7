"""Uploads for the photo templates on SQLite and PostgreSQL: a mask (its alpha, or its luminance when
opaque) stored binary with its coverage; phone photos: HEIC read, EXIF orientation applied."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
from PIL import Image

from tests.support.api import assert_error
from tests.support.backend import Stack
from tests.support.redesign import painted_mask, pixels, room_photo, upload


def test_a_painted_mask_is_stored_binary_with_its_coverage(api_stack: Stack) -> None:
    with api_stack.client() as c:
        for alpha in (True, False):
            up = upload(c, painted_mask(200, 100, (0, 0, 99, 99), alpha=alpha), "mask")
            assert up["role"] == "mask" and (up["width"], up["height"]) == (200, 100)
            assert up["coverage"] == 0.5 and up["cutout"] is None
            stored = Image.open(io.BytesIO(c.get(up["url"]).content))
            assert stored.mode == "RGBA"
            rgb, a = np.asarray(stored)[..., 0], np.asarray(stored)[..., 3]
            assert set(np.unique(rgb)) == {0, 255} and np.array_equal(a, 255 - rgb)  # LoadImage: 1 - alpha
            assert rgb[50, 50] == 255 and rgb[50, 150] == 0
        assert upload(c, painted_mask(200, 100, None), "mask")["coverage"] == 0.0


def test_a_heic_phone_photo_is_read(api_stack: Stack) -> None:
    rgb = Image.open(io.BytesIO(room_photo(320, 240)))
    heif = pillow_heif.from_pillow(rgb)
    out = io.BytesIO()
    heif.save(out, quality=90)
    with api_stack.client() as c:
        r = c.post(
            "/api/uploads",
            files={"file": ("IMG_0001.HEIC", out.getvalue(), "image/heic")},
            data={"role": "photo"},
        )
        assert r.status_code == 201, r.text
        up = r.json()
        assert (up["width"], up["height"]) == (320, 240)
        got = pixels(c, up["url"]).astype(int)
        assert np.abs(got - np.asarray(rgb).astype(int)).mean() < 12  # lossy, but the same picture


def test_a_phone_photo_is_turned_upright(api_stack: Stack) -> None:
    img = Image.open(io.BytesIO(room_photo(320, 240)))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    with api_stack.client() as c:
        up = upload(c, out.getvalue(), "photo", "IMG_0002.jpg")
        assert (up["width"], up["height"]) == (240, 320)


def test_a_mask_bigger_than_the_upload_limit_side_is_refused(api_stack: Stack) -> None:
    side = api_stack.settings.upload_max_side + 8
    with api_stack.client() as c:
        r = c.post(
            "/api/uploads",
            files={"file": ("m.png", painted_mask(side, 64, (0, 0, 10, 10)), "image/png")},
            data={"role": "mask"},
        )
        assert_error(r, 422, "mask_too_large")
