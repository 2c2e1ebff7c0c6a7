"""Upload roles through the API on SQLite and PostgreSQL: a product photo cut out at once (the real rembg
path on a model the test builds), adjusted, previewed on a checkerboard; photos; every bad input refused
with its code and message, nothing stored; and nothing downloaded."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from backend.cutout import FILLS_FRAME, NO_FOREGROUND, NOTHING_LEFT
from backend.images import CHECKER_TONES
from tests.factories import sketch_png
from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, Stack, start_stack
from tests.support.cutout import product_photo, transparent_png, write_matte_model
from tests.support.network import Guard


@pytest.fixture
def stack(db_url: str, tmp_path: Path, no_network: Guard, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "rembg-home"))
    model = write_matte_model(tmp_path / "models" / "rembg" / "u2net.onnx")
    with start_stack(db_url, tmp_path, None, rembg_model_path=model, cutout_threads=1) as stack:
        yield stack
    assert not (tmp_path / "rembg-home").exists()


def upload(c: httpx.Client, data: bytes, role: str | None = None, name: str = "photo.jpg") -> httpx.Response:
    form = {"role": role} if role is not None else {}
    return c.post("/api/uploads", files={"file": (name, data, "application/octet-stream")}, data=form)


def image(c: httpx.Client, url: str) -> Image.Image:
    r = c.get(url)
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content))


def stored_pngs(stack: Stack) -> list[Path]:
    return sorted((stack.settings.data_dir / "uploads").rglob("*.png"))


def test_a_product_photo_is_cut_out_when_uploaded(stack: Stack) -> None:
    with stack.client() as c:
        r = upload(c, product_photo(), "product")
        assert r.status_code == 201, r.text
        up = r.json()
        assert up["role"] == "product" and (up["width"], up["height"]) == (480, 360)
        assert up["cutout"] == {"method": "model", "threshold": None, "erode_px": 0, "foreground": 0.2}
        assert up["derived_from"] is None and up["dark_lines"] is False
        cut = image(c, up["url"])
        assert cut.mode == "RGBA"
        alpha = np.asarray(cut.getchannel("A"))
        assert alpha[180, 240] >= 250 and alpha[10, 10] == 0
        assert c.get(f"/api/uploads/{up['id']}").json() == up
    # the photo, its matte and the cut-out, content-named
    assert {p.parent.parent.name for p in stored_pngs(stack)} == {"uploads", "sources", "mattes"}


def test_the_preview_shows_the_cut_out_on_a_checkerboard(stack: Stack) -> None:
    with stack.client() as c:
        up = upload(c, product_photo(), "product").json()
        preview = image(c, up["preview_url"] + "?width=512&height=512").convert("RGB")
    assert preview.size == (512, 512)
    px = np.asarray(preview)
    corner = {int(v) for v in px[:32, :32].reshape(-1, 3)[:, 0]}
    assert corner == set(CHECKER_TONES)  # transparent: both tones of the squares show
    assert tuple(int(v) for v in px[256, 256]) == pytest.approx((30, 40, 90), abs=8)  # the product


def test_adjusting_makes_a_new_upload_from_the_stored_matte(stack: Stack) -> None:
    with stack.client() as c:
        first = upload(c, product_photo(), "product").json()
        stack.settings.rembg_model_path.unlink()  # an adjustment needs no model
        r = c.post(f"/api/uploads/{first['id']}/cutout", json={"threshold": 128, "erode_px": 4})
        assert r.status_code == 201, r.text
        adjusted = r.json()
        assert adjusted["id"] != first["id"] and adjusted["derived_from"] == first["id"]
        assert adjusted["cutout"]["threshold"] == 128 and adjusted["cutout"]["erode_px"] == 4
        assert adjusted["cutout"]["foreground"] < first["cutout"]["foreground"]
        alpha = np.asarray(image(c, adjusted["url"]).getchannel("A"))
        assert set(np.unique(alpha)) == {0, 255}
        # the same adjustments from the adjusted one: the same upload; the defaults: the original
        again = c.post(f"/api/uploads/{adjusted['id']}/cutout", json={"threshold": 128, "erode_px": 4})
        assert again.json()["id"] == adjusted["id"]
        back = c.post(f"/api/uploads/{adjusted['id']}/cutout", json={})
        assert back.json()["id"] == first["id"]
        assert c.get(f"/api/uploads/{first['id']}").json() == first  # untouched


def test_adjustments_do_not_use_up_the_upload_quota(db_url: str, tmp_path: Path, no_network: Guard) -> None:
    model = write_matte_model(tmp_path / "rembg" / "u2net.onnx")
    with start_stack(db_url, tmp_path, None, rembg_model_path=model, max_uploads_per_hour=1) as stack:
        with stack.client() as c:
            up = upload(c, product_photo(), "product").json()
            for erode_px in (1, 2, 3):
                r = c.post(f"/api/uploads/{up['id']}/cutout", json={"erode_px": erode_px})
                assert r.status_code == 201, r.text
            assert_error(upload(c, sketch_png()), 429, "upload_quota_exceeded")


def test_a_png_with_transparency_is_kept_as_cut_out_without_the_model(stack: Stack) -> None:
    stack.settings.rembg_model_path.unlink()
    with stack.client() as c:
        r = upload(c, transparent_png(), "product", "chair.png")
        assert r.status_code == 201, r.text
        assert r.json()["cutout"]["method"] == "alpha"
        alpha = np.asarray(image(c, r.json()["url"]).getchannel("A"))
    assert np.array_equal(alpha, np.asarray(Image.open(io.BytesIO(transparent_png())).getchannel("A")))


def test_without_the_model_a_product_photo_is_503_and_nothing_is_stored(stack: Stack) -> None:
    stack.settings.rembg_model_path.unlink()
    with stack.client() as c:
        r = upload(c, product_photo(), "product")
    error = assert_error(r, 503, "cutout_model_missing")
    assert "PNG with transparency" in error["message"] and int(r.headers["retry-after"]) > 0
    assert stored_pngs(stack) == []


@pytest.mark.parametrize(
    ("data", "role", "status", "code", "message"),
    [
        (product_photo(colour=(250, 250, 250)), "product", 422, "no_foreground", NO_FOREGROUND),
        (product_photo(box=(0.02, 0.02, 0.98, 0.98)), "product", 422, "product_fills_frame", FILLS_FRAME),
        (
            product_photo(40, 40),
            "product",
            422,
            "image_too_small",
            "40x40 is too small: at least 64x64 pixels",
        ),
        (
            b"GIF89a not really",
            "product",
            415,
            "not_an_image",
            "the file is not a PNG, JPEG, WebP or HEIC image",
        ),
        (sketch_png(), "style_photo", 422, "style_photo_is_sketch", None),
        (sketch_png(dark_on_light=False), "style_photo", 422, "style_photo_is_sketch", None),
        (sketch_png(), "painting", 422, "invalid_input", None),
        (
            sketch_png(),
            "",
            422,
            "invalid_input",
            "role must be one of sketch, product, style_photo, composition, photo, mask "
            "(or left out: sketch).",
        ),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(
    stack: Stack, data: bytes, role: str, status: int, code: str, message: str | None
) -> None:
    with stack.client() as c:
        error = assert_error(upload(c, data, role), status, code)
    if message:
        assert error["message"] == message
    assert error["details"] and stored_pngs(stack) == []


def test_a_product_upload_without_its_photo_is_422(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/api/uploads", data={"role": "product"})
    error = assert_error(r, 422, "invalid_input")
    assert error["details"][0]["field"] == "file"


def test_bad_adjustments_are_refused(stack: Stack) -> None:
    with stack.client() as c, stack.client(OTHER_TOKEN) as bob:
        product = upload(c, product_photo(box=(0.45, 0.4, 0.55, 0.6)), "product").json()
        sketch = upload(c, sketch_png()).json()
        url = f"/api/uploads/{product['id']}/cutout"
        assert_error(c.post(f"/api/uploads/{sketch['id']}/cutout", json={}), 409, "not_a_product")
        assert_error(c.post(url, json={"threshold": 0}), 422, "invalid_input")
        assert_error(c.post(url, json={"erode_px": 21}), 422, "invalid_input")
        assert_error(c.post(url, json={"feather": 2}), 422, "invalid_input")
        empty = assert_error(c.post(url, json={"erode_px": 20}), 422, "cutout_empty")
        assert empty["message"] == NOTHING_LEFT and empty["details"][0]["field"] == "erode_px"
        assert_error(bob.post(url, json={}), 404, "upload_not_found")
    assert len(stored_pngs(stack)) == 4  # the sketch, and the product's cut-out, photo and matte


def test_photos_are_rgb_with_their_orientation_applied(stack: Stack) -> None:
    img = Image.open(io.BytesIO(product_photo(640, 480)))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    with stack.client() as c:
        ups = {
            role: upload(c, out.getvalue(), role).json() for role in ("photo", "style_photo", "composition")
        }
        for role, up in ups.items():
            assert up["role"] == role and (up["width"], up["height"]) == (480, 640), up
            assert image(c, up["url"]).mode == "RGB" and up["cutout"] is None
        preview = image(c, ups["photo"]["preview_url"] + "?width=256&height=256")
    assert preview.size == (256, 256)
    assert len({up["id"] for up in ups.values()}) == 3  # one image, three roles: three uploads


def test_a_sketch_is_still_the_default(stack: Stack) -> None:
    with stack.client() as c:
        up = upload(c, sketch_png(), name="plan.png").json()
    assert up["role"] == "sketch" and up["dark_lines"] is True and up["cutout"] is None
