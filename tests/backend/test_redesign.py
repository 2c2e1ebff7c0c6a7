"""The photo templates end to end on the emulator over loopback, on SQLite and PostgreSQL: restyle (with
and without a keep mask), stage and edit through POST /api/jobs, the dispatcher and the emulator's real
pixel composites. The keep mask and everything outside an edit (or staging) region are pixel-identical to
the photo at the render size; the render's aspect follows the photo's. Bad input gets its 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, Stack, start_stack
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.redesign import outputs, painted_mask, room_photo, upload

pytestmark = pytest.mark.skipif(bool(REAL_COMFYUI), reason=NEEDS_EMULATOR)

W, H = 640, 480
RENDER = (683, 512)  # height 512, the photo's 4:3 aspect kept
FAST = {"steps": 2, "seed": 7}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = start_emulator(tmp_path / "emu")
    try:
        yield emu
    finally:
        emu.kill()


@pytest.fixture
def stack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, None, comfy_ui_address=emulator.url.removeprefix("http://")) as s:
        yield s


def run(stack: Stack, c: httpx.Client, template: str, inputs: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/api/jobs", json={"template": template, "inputs": {**FAST, **inputs}})
    assert r.status_code == 201, r.text
    stack.drain(timeout_s=90)
    job: dict[str, Any] = c.get(f"/api/jobs/{r.json()['id']}").json()
    return job


def test_edit_changes_only_the_painted_region(stack: Stack) -> None:
    with stack.client() as c:
        photo = upload(c, room_photo(W, H), "photo")
        mask = upload(c, painted_mask(W, H, (300, 200, 500, 400)), "mask")
        assert mask["role"] == "mask" and 0.1 < mask["coverage"] < 0.2
        job = run(stack, c, "edit", {"photo": photo["id"], "mask": mask["id"], "prompt": "a green armchair"})
        render, at_size, region = outputs(c, job)
        assert job["template"]["name"] == "edit"
        assert render.shape[:2] == at_size.shape[:2] == region.shape == (RENDER[1], RENDER[0])
        outside = region == 0
        assert outside.mean() > 0.7
        assert np.array_equal(render[outside], at_size[outside])  # outside the mask: nothing changed
        inside = region == 255
        assert inside.mean() > 0.05 and not np.array_equal(render[inside], at_size[inside])


def test_clearing_a_region_is_an_edit_without_a_description(stack: Stack) -> None:
    with stack.client() as c:
        photo = upload(c, room_photo(W, H), "photo")
        mask = upload(c, painted_mask(W, H, (40, 40, 200, 300), alpha=False), "mask")  # white on black
        job = run(stack, c, "edit", {"photo": photo["id"], "mask": mask["id"]})
        render, at_size, region = outputs(c, job)
        assert np.array_equal(render[region == 0], at_size[region == 0])
        assert np.array_equal(render[region == 0], at_size[region == 0])


def test_restyle_keeps_the_keep_mask_pixel_for_pixel(stack: Stack) -> None:
    with stack.client() as c:
        photo = upload(c, room_photo(W, H), "photo")
        keep = upload(c, painted_mask(W, H, (80, 80, 213, 240)), "mask")  # the window
        job = run(
            stack,
            c,
            "restyle",
            {"photo": photo["id"], "keep_mask": keep["id"], "prompt": "japandi living room",
             "style": "minimalist", "creativity": 0.7},
        )  # fmt: skip
        render, at_size, kept = outputs(c, job)
        assert render.shape[:2] == (RENDER[1], RENDER[0])
        inside = kept == 255
        assert inside.mean() > 0.05
        assert np.array_equal(render[inside], at_size[inside])  # the window: untouched
        assert not np.array_equal(render[kept == 0], at_size[kept == 0])  # the rest: restyled


def test_restyle_without_a_keep_mask_restyles_everything(stack: Stack) -> None:
    with stack.client() as c:
        photo = upload(c, room_photo(480, 640), "photo")  # portrait: the render is too
        job = run(stack, c, "restyle", {"photo": photo["id"], "prompt": "industrial loft"})
        render, at_size, kept = outputs(c, job)
        assert render.shape[:2] == (512, 384) and not kept.any()
        assert not np.array_equal(render, at_size)


def test_stage_furnishes_only_the_floor(stack: Stack) -> None:
    with stack.client() as c:
        photo = upload(c, room_photo(W, H), "photo")
        floor = upload(c, painted_mask(W, H, (0, 330, W - 1, H - 1)), "mask")
        job = run(
            stack,
            c,
            "stage",
            {"photo": photo["id"], "floor_mask": floor["id"], "prompt": "scandinavian sofa"},
        )
        render, at_size, region = outputs(c, job)
        walls = region == 0
        assert walls[:200].all()  # the top of the room (walls, the window) is outside the region
        assert np.array_equal(render[walls], at_size[walls])
        assert not np.array_equal(render[region == 255], at_size[region == 255])


def test_bad_photo_and_mask_inputs_get_a_clear_4xx(stack: Stack) -> None:
    with stack.client() as c:
        photo = upload(c, room_photo(W, H), "photo")
        small = upload(c, room_photo(200, 150), "photo")
        cases = [
            ("edit", {"mask": upload(c, painted_mask(W // 2, H // 2, (10, 10, 100, 100)), "mask")["id"]},
             "mask_size_mismatch"),
            ("edit", {"mask": upload(c, painted_mask(W, H, None), "mask")["id"]}, "mask_empty"),
            ("edit", {"mask": upload(c, painted_mask(W, H, (0, 0, W, H)), "mask")["id"]}, "mask_full"),
            ("edit", {"mask": photo["id"]}, "wrong_upload_role"),
            ("stage", {"floor_mask": upload(c, painted_mask(W, H, None), "mask")["id"]}, "mask_empty"),
            ("restyle", {"keep_mask": upload(c, painted_mask(W, H, (0, 0, W, H)), "mask")["id"]},
             "mask_full"),
        ]  # fmt: skip
        for template, inputs, code in cases:
            r = c.post(
                "/api/jobs",
                json={"template": template, "inputs": {"photo": photo["id"], "prompt": "a room", **inputs}},
            )
            error = assert_error(r, 422, code)
            assert error["details"][0]["field"].startswith("inputs."), error
        mask = upload(c, painted_mask(200, 150, (10, 10, 50, 50)), "mask")
        r = c.post(
            "/api/jobs", json={"template": "edit", "inputs": {"photo": small["id"], "mask": mask["id"]}}
        )
        assert_error(r, 422, "image_too_small")


def test_a_render_from_the_gallery_is_edited_as_a_photo(stack: Stack) -> None:
    with stack.client() as c:
        photo = upload(c, room_photo(W, H), "photo")
        first = run(stack, c, "restyle", {"photo": photo["id"], "prompt": "boho living room"})
        image_id = first["images"][0]["id"]
        r = c.post(f"/api/images/{image_id}/photo")
        assert r.status_code == 201, r.text
        again = r.json()
        assert again["role"] == "photo" and (again["width"], again["height"]) == RENDER
        assert c.post(f"/api/images/{image_id}/photo").json()["id"] == again["id"]  # by content
        mask = upload(c, painted_mask(*RENDER, (100, 100, 300, 300)), "mask")
        job = run(stack, c, "edit", {"photo": again["id"], "mask": mask["id"], "prompt": "a floor lamp"})
        render, at_size, region = outputs(c, job)
        assert np.array_equal(render[region == 0], at_size[region == 0])
    with stack.client(OTHER_TOKEN) as other:
        assert_error(other.post(f"/api/images/{image_id}/photo"), 404, "image_not_found")
