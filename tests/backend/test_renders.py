"""Renders from ComfyUI: checked whole before a job succeeds, thumbnailed after, and a thumbnail the
dispatcher did not store is made by the API on its first request."""

from __future__ import annotations

import asyncio
import io
import zlib

import pytest
from PIL import Image as PILImage
from sqlalchemy import select, update

from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.images import THUMBNAIL_SIDE_PX, ImageRejected, check_render, make_thumbnail
from backend.models import Image
from tests.factories import job_body
from tests.support.backend import Stack
from tests.support.comfy import SubmittedPrompts, Workload


def png(width: int = 640, height: int = 384) -> bytes:
    out = io.BytesIO()
    PILImage.linear_gradient("L").resize((width, height)).convert("RGB").save(out, "PNG")
    return out.getvalue()


def flip_idat_byte(data: bytes) -> bytes:
    at = data.index(b"IDAT") + 8
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def test_a_whole_png_passes_with_its_size_and_its_thumbnail_fits() -> None:
    info = check_render(png(640, 384))
    assert (info.width, info.height) == (640, 384)
    thumb = PILImage.open(io.BytesIO(make_thumbnail(png(640, 384))))
    assert thumb.format == "JPEG" and thumb.size == (THUMBNAIL_SIDE_PX, 230)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png()[:-30], id="truncated"),
        pytest.param(png()[:200], id="cut-in-the-pixels"),
        pytest.param(flip_idat_byte(png()), id="bit-flip-in-the-pixels"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + zlib.compress(b"not chunks"), id="garbage-after-signature"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="not-an-image"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_broken_render_is_refused(data: bytes) -> None:
    with pytest.raises(ImageRejected) as caught:
        check_render(data)
    assert caught.value.code == "corrupt_render"


def test_a_jpeg_is_not_a_render() -> None:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 64)).save(out, "JPEG")
    with pytest.raises(ImageRejected, match="JPEG instead of PNG"):
        check_render(out.getvalue())


async def _images(settings: Settings, job_id: str, ready: bool | None = None) -> list[Image]:
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            if ready is not None:
                await s.execute(update(Image).where(Image.job_id == job_id).values(thumb_ready=ready))
            return list(await s.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.index)))
    finally:
        await engine.dispose()


@pytest.mark.comfyui
def test_thumbnails_come_after_success_and_a_missing_one_is_made_on_request(
    stack: Stack, workload: Workload, submitted_prompts: SubmittedPrompts
) -> None:
    with stack.client() as c:  # 512²: renders wider than a thumbnail, so it is scaled down
        job = c.post("/api/jobs", json=job_body(**workload.job(num_images=2, width=512, height=512))).json()
        submitted_prompts.add(job["id"])  # a job's id is its prompt id
        stack.drain(workload.render_s)
        done = c.get(f"/api/jobs/{job['id']}").json()
        assert done["status"] == "succeeded"
        images = asyncio.run(_images(stack.settings, job["id"]))
        assert [i.thumb_ready for i in images] == [True, True]  # the dispatcher made them
        root = stack.settings.data_dir
        files = list(root.rglob("*.jpg"))
        assert len(files) == 2
        # As if the dispatcher had stopped between `succeeded` and the thumbnails:
        for f in files:
            f.unlink()
        asyncio.run(_images(stack.settings, job["id"], ready=False))
        first = c.get(done["images"][0]["thumbnail_url"])
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        assert PILImage.open(io.BytesIO(first.content)).size == (THUMBNAIL_SIDE_PX, THUMBNAIL_SIDE_PX)
        assert [i.thumb_ready for i in asyncio.run(_images(stack.settings, job["id"]))] == [True, False]
        again = c.get(done["images"][0]["thumbnail_url"])
        assert again.content == first.content
        # A render whose PNG is gone too is a clear 404, not a 500.
        for p in root.rglob("*.png"):
            p.unlink()
        gone = c.get(done["images"][1]["thumbnail_url"])
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "file_missing"
