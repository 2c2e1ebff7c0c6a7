"""A selection (or a project) as one ZIP: the full-size PNGs as stored and a contact sheet, streamed;
a selection over the limits is a 413 before any byte."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from backend import downloads
from tests.backend.test_projects import rendered
from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, Stack

pytestmark = pytest.mark.comfyui


def test_the_zip_holds_the_pngs_and_the_contact_sheet(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    with stack.client() as alice, stack.client(OTHER_TOKEN) as bob:
        jobs = rendered(alice, stack, 3)
        images = [j["images"][0] for j in jobs[:2]]
        r = alice.post("/api/images/zip", json={"image_ids": [i["id"] for i in images]})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        assert r.headers["content-disposition"] == 'attachment; filename="renders.zip"'
        archive = zipfile.ZipFile(io.BytesIO(r.content))
        assert archive.testzip() is None
        names = archive.namelist()
        assert names[-1] == "contact-sheet.png" and len(names) == 3
        for image, job, name in zip(images, jobs, names, strict=False):
            assert name == f"render-{job['id'][:8]}-1-seed{job['seed']}.png"
            assert archive.read(name) == alice.get(image["url"]).content
        sheet = Image.open(io.BytesIO(archive.read("contact-sheet.png")))
        assert sheet.format == "PNG" and sheet.width >= 3 * downloads.TILE_PX

        project = alice.post("/api/projects", json={"name": "Lake cabin"}).json()
        alice.put(f"/api/projects/{project['id']}/jobs/{jobs[2]['id']}")
        r = alice.post("/api/images/zip", json={"project_id": project["id"]})
        assert r.headers["content-disposition"] == 'attachment; filename="lake-cabin.zip"'
        assert zipfile.ZipFile(io.BytesIO(r.content)).namelist() == [
            f"render-{jobs[2]['id'][:8]}-1-seed{jobs[2]['seed']}.png",
            "contact-sheet.png",
        ]

        assert_error(
            bob.post("/api/images/zip", json={"image_ids": [images[0]["id"]]}), 404, "image_not_found"
        )
        assert_error(
            bob.post("/api/images/zip", json={"project_id": project["id"]}), 404, "project_not_found"
        )
        assert alice.post("/api/images/zip", json={"image_ids": []}).status_code == 422
        monkeypatch.setattr(downloads, "ZIP_MAX_BYTES", images[0]["size_bytes"])  # the API runs in-process
        error = assert_error(
            alice.post("/api/images/zip", json={"image_ids": [i["id"] for i in images]}), 413, "zip_too_large"
        )
        assert "Choose fewer renders" in error["message"]


def test_the_contact_sheet_says_each_renders_settings() -> None:
    settings = {"style": "indochine", "kind": "text", "width": 768, "height": 512, "seed": 42,
                "steps": 25, "cfg": 7.0, "sampler": "dpmpp_2m",
                "prompt": "sunlit living room with rattan chairs " * 6}  # fmt: skip
    lines = downloads.settings_lines("render-1.png", settings)
    assert lines[:3] == [
        "render-1.png",
        "indochine · text · 768x512",
        "seed 42 · 25 steps · cfg 7.0 · dpmpp_2m",
    ]
    assert len(lines) == downloads.TEXT_LINES and lines[-1].endswith("…")
    tile = Image.new("RGB", (downloads.TILE_PX, 240), "tan")
    sheet = Image.open(io.BytesIO(downloads.make_contact_sheet([(tile, lines)] * 4)))
    assert sheet.size[1] > 2 * downloads.TILE_PX  # two rows of three
