"""The built-in `product` template end to end on the emulator (SQLite and PostgreSQL): uploads by role,
`POST /api/jobs {"template": "product"}`, the dispatcher, ComfyUI's run, results and passes stored.

Product fidelity, exactly: the product is pasted back (ImageCompositeMasked with the product mask) on the
512x512 image that the x4 upscale reads, and that image is stored as the pass "Refine 2". Wherever the
upload is fully opaque (alpha 255, where ComfyUI's product mask is exactly 1.0) that pass's pixels are the
upload's bytes, unchanged. The 2048x2048 result is the upscale of that pass: an upscaler (ESRGAN, or the
emulator's Lanczos) changes pixels, so the result is held to the pass, not to the bytes: box-filtered back
to 512x512, inside the product mask shrunk by 3 pixels (away from the edge a resampler blurs), it stays
within MAX_MEAN_DIFF of the upload.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFilter

from backend.models import UploadRole
from contract.template_decl import UploadRoleName
from tests.factories import sketch_png
from tests.support.api import assert_error, wait_status
from tests.support.backend import Stack, start_stack
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.product import (
    SIDE,
    UPSCALED,
    composition_png,
    image_of,
    png,
    product_inputs,
    product_mask,
    product_png,
    upload,
    uploaded,
)

FINAL = {"succeeded", "failed", "cancelled"}
MAX_MEAN_DIFF = 4.0  # of 255, inside the shrunk mask, after the x4 upscale and a box filter back

pytestmark = pytest.mark.skipif(bool(REAL_COMFYUI), reason=NEEDS_EMULATOR)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = start_emulator(tmp_path / "comfyui", step_ms=1)  # core + packs records, as by default
    try:
        yield emu
    finally:
        emu.kill()


@pytest.fixture
def product_stack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, None, comfy_ui_address=emulator.url.removeprefix("http://")) as stack:
        yield stack


def run(stack: Stack, c: httpx.Client, inputs: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/api/jobs", json={"template": "product", "inputs": inputs})
    assert r.status_code == 201, r.text
    dispatcher = stack.dispatcher_thread().start()
    try:
        done = wait_status(c, r.json()["id"], FINAL, 120)
    finally:
        dispatcher.stop()
    assert done["status"] == "succeeded", done
    return done


def ran_graph(emu: EmulatorProcess, job_id: str) -> dict[str, Any]:
    entry = httpx.get(f"{emu.url}/history/{job_id}", timeout=10).json()[job_id]
    graph: dict[str, Any] = entry["prompt"][2]
    return graph


def test_the_upload_roles_are_the_ones_a_declaration_may_require() -> None:
    assert set(UploadRoleName.__args__) == {r.value for r in UploadRole}  # type: ignore[attr-defined]


def test_a_product_is_staged_upscaled_and_kept_as_it_is(
    product_stack: Stack, emulator: EmulatorProcess
) -> None:
    with product_stack.client() as c:
        template = c.get("/api/templates/product").json()
        assert template["builtin"] is True and template["title"] == "Place a product"
        done = run(product_stack, c, product_inputs(c))
        assert done["template"]["name"] == "product"
        # progress runs over the three samplers: 4 draft steps (the input), 20 and 20 (the refines)
        assert done["progress"]["value"] == done["progress"]["max"] >= 4 + 20 + 20, done["progress"]
        assert [p["label"] for p in done["passes"]] == ["Draft", "Refine 1", "Refine 2"]
        assert len(done["images"]) == 1
        result = image_of(c, done["images"][0]["url"])
        assert result.size == (UPSCALED, UPSCALED)
        passes = [image_of(c, p["url"]) for p in done["passes"]]
        assert [p.size for p in passes] == [(SIDE, SIDE)] * 3

        graph = ran_graph(emulator, done["id"])
        assert {"44", "53", "32"} <= set(graph)  # both optional images given: nothing bypassed
        assert graph["53"]["inputs"]["weight"] == 0.6 and graph["44"]["inputs"]["strength"] == 0.5

        upload = np.asarray(Image.open(io.BytesIO(product_png())).convert("RGB"))
        mask = product_mask(product_png())
        composite = np.asarray(passes[2])
        assert mask.sum() > 40_000
        assert np.array_equal(composite[mask], upload[mask])  # the product's bytes, exactly
        assert not np.array_equal(composite[~mask], upload[~mask])  # the room around it was painted
        back = np.asarray(result.resize((SIDE, SIDE), Image.Resampling.BOX), dtype=np.float32)
        inner = np.asarray(Image.fromarray(mask).filter(ImageFilter.MinFilter(7))) > 0
        diff = np.abs(back[inner] - upload[inner].astype(np.float32)).mean()
        assert diff < MAX_MEAN_DIFF, diff


def test_without_the_optional_images_their_nodes_are_not_sent(
    product_stack: Stack, emulator: EmulatorProcess
) -> None:
    with product_stack.client() as c:
        done = run(product_stack, c, product_inputs(c, composition=False, style_photo=False))
        graph = ran_graph(emulator, done["id"])
        assert not {"40", "41", "42", "43", "44", "50", "51", "52", "53"} & set(graph)
        assert graph["3"]["inputs"]["positive"] == ["32", 0] and graph["3"]["inputs"]["model"] == ["10", 0]
        assert len(done["passes"]) == 3 and image_of(c, done["images"][0]["url"]).size == (UPSCALED,) * 2


def test_render_again_sends_the_same_graph_and_gives_the_same_pixels(
    product_stack: Stack, emulator: EmulatorProcess
) -> None:
    with product_stack.client() as c:
        first = run(product_stack, c, product_inputs(c, composition=False))
        r = c.post(f"/api/jobs/{first['id']}/retry")
        assert r.status_code in (200, 201), r.text
        dispatcher = product_stack.dispatcher_thread().start()
        try:
            again = wait_status(c, r.json()["id"], FINAL, 120)
        finally:
            dispatcher.stop()
        assert again["status"] == "succeeded", again
        assert again["seed"] == first["seed"] == 1234
        one, two = ran_graph(emulator, first["id"]), ran_graph(emulator, again["id"])
        prefix = {n for n, node in one.items() if "filename_prefix" in node["inputs"]}
        for graph in (one, two):
            for n in prefix:
                graph[n]["inputs"].pop("filename_prefix")
        assert one == two
        # the same pixels (the PNGs' bytes differ: ComfyUI writes the prompt, with the job's id, into them)
        pairs = [(first["images"][0], again["images"][0])]
        pairs += zip(first["passes"], again["passes"], strict=True)
        for a, b in pairs:
            assert np.array_equal(np.asarray(image_of(c, a["url"])), np.asarray(image_of(c, b["url"])))


def test_every_bad_input_is_a_clear_4xx(api_stack: Stack) -> None:
    with api_stack.client() as c:
        product = uploaded(c, product_png(), "product")["id"]
        sketch = uploaded(c, sketch_png(600, 600), "sketch")["id"]

        def job(**inputs: Any) -> httpx.Response:
            return c.post("/api/jobs", json={"template": "product", "inputs": {"prompt": "a loft", **inputs}})

        error = assert_error(job(), 422, "invalid_input")
        assert any(d["field"] == "inputs.product" for d in error["details"]), error
        error = assert_error(job(product=sketch), 422, "wrong_upload_role")
        assert error["message"] == (
            "inputs.product: this input takes a product photo; the upload is a sketch "
            "(upload it with role=product)"
        )
        error = assert_error(job(product=product, style_photo=product), 422, "wrong_upload_role")
        assert "takes a style photo" in error["message"]
        small = uploaded(c, product_png(320), "product")["id"]
        error = assert_error(job(product=small), 422, "image_too_small")
        assert "320x320" in error["message"] and "512x512" in error["message"]
        assert_error(job(product="00000000-0000-0000-0000-000000000000"), 404, "unknown_upload")
        # refused at upload, each with its reason
        empty = Image.new("RGBA", (600, 600), (10, 20, 30, 0))
        error = assert_error(upload(c, png(empty), "product"), 422, "no_foreground")
        assert "no product found" in error["message"]
        error = assert_error(upload(c, composition_png(), "style_photo"), 422, "style_photo_is_sketch")
        assert "looks like a sketch" in error["message"]
        r = upload(c, b"not an image at all", "product")
        assert r.status_code in (415, 422) and r.json()["error"]["code"], r.text
        assert_error(upload(c, product_png(40), "product"), 422, "image_too_small")
        assert c.get("/api/jobs").json()["items"] == []  # nothing was queued
