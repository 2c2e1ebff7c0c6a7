"""Sketch uploads: accepted formats, EXIF orientation, re-encoding, limits, and every bad file refused."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from tests.factories import job_body, sketch_png
from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, Stack


def mean(img: Image.Image) -> float:
    return sum(i * n for i, n in enumerate(img.convert("L").histogram())) / (img.width * img.height)


def upload(c, data: bytes, name: str = "sketch.png", content_type: str = "image/png"):
    return c.post("/api/uploads", files={"file": (name, data, content_type)})


@pytest.mark.parametrize(
    ("fmt", "ctype"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_png_jpeg_webp_are_accepted_and_reencoded_as_greyscale_png(
    api_stack: Stack, fmt: str, ctype: str
) -> None:
    with api_stack.client() as c:
        r = upload(c, sketch_png(fmt=fmt), f"s.{fmt.lower()}", ctype)
        assert r.status_code == 201, r.text
        up = r.json()
        assert (up["width"], up["height"]) == (640, 480)
        assert up["dark_lines"] is True
        stored = c.get(up["url"])
        assert stored.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(stored.content))
        assert img.format == "PNG" and img.mode == "L"


def test_same_sketch_twice_is_one_upload(api_stack: Stack) -> None:
    with api_stack.client() as c:
        a, b = upload(c, sketch_png()).json(), upload(c, sketch_png()).json()
    assert a["id"] == b["id"]


def test_exif_orientation_is_applied(api_stack: Stack) -> None:
    img = Image.open(io.BytesIO(sketch_png(640, 480, fmt="JPEG")))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    with api_stack.client() as c:
        up = upload(c, out.getvalue(), "phone.jpg", "image/jpeg").json()
    assert (up["width"], up["height"]) == (480, 640)


def test_white_lines_on_black_are_not_inverted(api_stack: Stack) -> None:
    with api_stack.client() as c:
        up = upload(c, sketch_png(dark_on_light=False)).json()
        assert up["dark_lines"] is False
        preview = Image.open(
            io.BytesIO(c.get(up["preview_url"], params={"width": 512, "height": 512}).content)
        )
    assert preview.size == (512, 512)
    assert mean(preview) < 60  # still mostly black: not inverted


def test_preview_shows_the_sketch_as_controlnet_gets_it(api_stack: Stack) -> None:
    with api_stack.client() as c:
        up = upload(c, sketch_png()).json()
        r = c.get(up["preview_url"], params={"width": 768, "height": 512})
        img = Image.open(io.BytesIO(r.content))
        assert img.size == (768, 512)
        assert mean(img) < 60  # dark paper, light lines: inverted
        assert_error(c.get(up["preview_url"], params={"width": 500}), 422, "invalid_input")


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "name", "ctype", "status", "code"),
    [
        (b"just some text", "notes.png", "image/png", 415, "not_an_image"),
        (b"%PDF-1.4 fake", "plan.pdf", "application/pdf", 415, "unsupported_media_type"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"/>',
            "s.svg",
            "image/svg+xml",
            415,
            "unsupported_media_type",
        ),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "s.png", "image/png", 415, "not_an_image"),
        (sketch_png()[:300], "truncated.png", "image/png", 422, "corrupt_image"),
        (_png_with_size(100_000, 100_000), "bomb.png", "image/png", 413, "image_too_large"),
        (_png_with_size(10_000, 10_000), "100mp.png", "image/png", 413, "image_too_large"),
        (sketch_png(32, 32), "tiny.png", "image/png", 422, "image_too_small"),
        (sketch_png(fmt="GIF"), "anim.gif", "image/gif", 415, "unsupported_media_type"),
        (sketch_png(fmt="GIF"), "lying.png", "image/png", 415, "unsupported_image_format"),
        (b"", "empty.png", "image/png", 422, "empty_upload"),
    ],
)
def test_bad_files_are_refused_and_store_nothing(api_stack: Stack, data, name, ctype, status, code) -> None:
    with api_stack.client() as c:
        assert_error(upload(c, data, name, ctype), status, code)
    assert (
        not list((api_stack.settings.data_dir / "uploads").rglob("*.png"))
        if (api_stack.settings.data_dir / "uploads").exists()
        else True
    )


def test_upload_over_the_byte_limit_is_413(db_url: str, tmp_path) -> None:
    from tests.support.backend import start_stack

    with start_stack(db_url, tmp_path, None, upload_max_bytes=2048) as stack:
        with stack.client() as c:
            assert_error(upload(c, sketch_png(fmt="BMP") + b"\0" * 4096, "big.png"), 413, "upload_too_large")


def test_uploads_belong_to_their_designer(api_stack: Stack) -> None:
    with api_stack.client() as alice, api_stack.client(OTHER_TOKEN) as bob:
        up = upload(alice, sketch_png()).json()
        assert_error(bob.get(f"/api/uploads/{up['id']}"), 404, "upload_not_found")
        assert_error(bob.get(up["url"]), 404, "upload_not_found")
        r = bob.post("/api/jobs", json=job_body(kind="sketch", upload_id=up["id"]))
        assert_error(r, 404, "unknown_upload")
        ok = alice.post("/api/jobs", json=job_body(kind="sketch", upload_id=up["id"]))
        assert ok.status_code == 201 and ok.json()["kind"] == "sketch"


def test_upload_quota_answers_429(db_url: str, tmp_path) -> None:
    from tests.support.backend import start_stack

    with start_stack(db_url, tmp_path, None, max_uploads_per_hour=2) as stack:
        with stack.client() as c:
            assert upload(c, sketch_png(600)).status_code == 201
            assert upload(c, sketch_png(601)).status_code == 201
            r = upload(c, sketch_png(602))
            assert_error(r, 429, "upload_quota_exceeded")
            assert r.headers["retry-after"]
