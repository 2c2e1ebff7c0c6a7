"""Template jobs through SageMaker asynchronous inference (moto, the stand-in, the real adapter before the
emulator), on SQLite and PostgreSQL: the endpoint takes a template's jobs only when its recorded inventory
(SAGEMAKER_INVENTORY) covers the needs, and sends exactly the graph stored on the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.backend.test_sagemaker import Overflow, overflow, sagemaker_stack  # noqa: F401 (a fixture)
from tests.factories import sketch_png
from tests.support.api import job_status
from tests.support.net import wait_until
from tests.support.product import UPSCALED, product_inputs
from tests.support.redesign import outputs, painted_mask, room_photo, upload
from tests.support.templates import (
    STUDIO_PACK,
    insert_template_job,
    needs_of,
    read_images,
    read_job,
    template_graph,
)

UNRECORDED = "UnrecordedPackNode"


def record_inventory(emulator_url: str, path: Path) -> Path:
    """What a deploy records of the container: its /object_info classes and its model files."""
    info = httpx.get(f"{emulator_url}/object_info", timeout=30).json()
    folders = httpx.get(f"{emulator_url}/models", timeout=10).json()
    models = {f: httpx.get(f"{emulator_url}/models/{f}", timeout=10).json() for f in folders}
    path.write_text(json.dumps({"nodes": sorted(info), "models": models}))
    return path


def test_the_endpoint_runs_the_template_jobs_its_inventory_covers_with_the_stored_graph(
    db_url: str,
    tmp_path: Path,
    overflow: Overflow,  # noqa: F811
) -> None:
    emulator = overflow.emulator
    pack = json.loads(STUDIO_PACK.read_text())
    httpx.post(f"{emulator.url}/emulator/object_info", json=pack, timeout=30).raise_for_status()
    inventory = record_inventory(emulator.url, tmp_path / "inventory.json")
    with sagemaker_stack(db_url, tmp_path, overflow, sagemaker_inventory=inventory) as stack:
        with stack.client() as c:
            up = c.post(
                "/api/uploads", files={"file": ("room.png", sketch_png(640, 480), "image/png")}
            ).json()
            job = insert_template_job(stack.settings, up["id"])
            graph = template_graph(stack.settings.checkpoint_name)
            beyond = needs_of(graph, stack.settings.checkpoint_name)
            beyond["nodes"] = sorted([*beyond["nodes"], UNRECORDED])
            uncovered = insert_template_job(stack.settings, up["id"], name="beyond", needs=beyond)
            stack.drain(timeout_s=90)
            done = job_status(c, job.job_id)
            assert done["status"] == "succeeded", done
            assert [(p["node_id"], p["label"]) for p in done["passes"]] == [("20", "Draft")]
            assert len(done["images"]) == 1
            assert read_images(stack.settings, job.job_id) == [
                ("result", "9", None, 0),
                ("pass", "20", "Draft", 1),
            ]
            entry = httpx.get(f"{emulator.url}/history/{job.job_id}", timeout=10).json()[job.job_id]
            assert entry["prompt"][2] == job.graph  # through S3, the stand-in and the adapter, unchanged

            waiting = job_status(c, uncovered.job_id)
            assert waiting["status"] == "queued" and waiting["attempts"] == 0

            def notice() -> dict[str, Any] | None:
                found: dict[str, Any] | None = job_status(c, uncovered.job_id)["notice"]
                return found

            wait_until(lambda: notice() is not None, 15, 0.1, what="the job's notice")
            said = notice()
            endpoint = stack.settings.sagemaker_endpoint_name
            assert said is not None and said["code"] == "cannot_run"
            assert said["missing"] == [f"class {UNRECORDED} on {endpoint}"]


def test_the_endpoint_runs_a_product_job_with_its_three_images(
    db_url: str,
    tmp_path: Path,
    overflow: Overflow,  # noqa: F811
) -> None:
    """The built-in product template through SageMaker: the inventory recorded from a container with the
    node packs covers its lane; the three uploads travel with the request; result and passes come back."""
    emulator = overflow.emulator
    inventory = record_inventory(emulator.url, tmp_path / "inventory.json")
    with sagemaker_stack(db_url, tmp_path, overflow, sagemaker_inventory=inventory) as stack:
        with stack.client() as c:
            r = c.post("/api/jobs", json={"template": "product", "inputs": product_inputs(c)})
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]
            stack.drain(timeout_s=120)
            done = job_status(c, job_id)
            assert done["status"] == "succeeded", done
            assert [p["label"] for p in done["passes"]] == ["Draft", "Refine 1", "Refine 2"]
            assert (done["images"][0]["width"], done["images"][0]["height"]) == (UPSCALED, UPSCALED)
            entry = httpx.get(f"{emulator.url}/history/{job_id}", timeout=10).json()[job_id]
            assert entry["prompt"][2] == read_job(stack.settings, job_id).graph


def test_the_endpoint_runs_the_photo_templates_with_their_masks_kept(
    db_url: str,
    tmp_path: Path,
    overflow: Overflow,  # noqa: F811
) -> None:
    """Restyle (keep mask), stage (floor mask) and edit (region) through SageMaker: the photo and its mask
    travel with the request, the emulator's composites come back, and what each mask protects is
    pixel-identical to the photo at the render size, as it is on the GPU fleet."""
    emulator = overflow.emulator
    inventory = record_inventory(emulator.url, tmp_path / "inventory.json")
    width, height = 640, 480
    with sagemaker_stack(db_url, tmp_path, overflow, sagemaker_inventory=inventory) as stack:
        with stack.client() as c:
            photo = upload(c, room_photo(width, height), "photo")["id"]

            def mask(box: tuple[int, int, int, int]) -> str:
                found: str = upload(c, painted_mask(width, height, box), "mask")["id"]
                return found

            runs = {
                "restyle": {"keep_mask": mask((80, 80, 213, 240)), "prompt": "japandi living room"},
                "stage": {"floor_mask": mask((0, 330, width - 1, height - 1)), "prompt": "linen sofa"},
                "edit": {"mask": mask((300, 200, 500, 400)), "prompt": "a rattan armchair"},
            }
            ids = {}
            for template, inputs in runs.items():
                body = {"template": template, "inputs": {"photo": photo, "steps": 2, "seed": 7, **inputs}}
                r = c.post("/api/jobs", json=body)
                assert r.status_code == 201, r.text
                ids[template] = r.json()["id"]
            stack.drain(timeout_s=180)
            for template, job_id in ids.items():
                job = job_status(c, job_id)
                render, at_size, region = outputs(c, job)
                assert render.shape[:2] == (512, 683), template  # the photo's 4:3 kept
                protected = region == 255 if template == "restyle" else region == 0
                assert 0.05 < protected.mean() < 0.95, template
                assert np.array_equal(render[protected], at_size[protected]), template
                assert not np.array_equal(render[~protected], at_size[~protected]), template
                entry = httpx.get(f"{emulator.url}/history/{job_id}", timeout=10).json()[job_id]
                assert entry["prompt"][2] == read_job(stack.settings, job_id).graph, template
