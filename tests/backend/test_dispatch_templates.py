"""Template jobs through the dispatcher, on SQLite and PostgreSQL, against emulators over loopback.

Two emulators: one with a node pack's classes (the recorded `studio-pack.json` loaded with
`--object-info`), one without. A template job needing a pack class is claimed only for the first; with
only the second configured it is never claimed and its notice says which class is missing where. What
ComfyUI ran (its /history prompt) is exactly the graph stored on the job, on the first submit and after
a ComfyUI restart; progress sums both samplers; the result and the labelled pass are stored by role.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import sketch_png
from tests.support.api import job_status, wait_status
from tests.support.backend import start_stack
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.net import wait_until
from tests.support.templates import (
    FIRST_STEPS,
    PACK_CLASS,
    SECOND_STEPS,
    STUDIO_PACK,
    insert_template_job,
    read_images,
    read_job,
    template_graph,
)

FINAL = {"succeeded", "failed", "cancelled"}

pytestmark = pytest.mark.skipif(bool(REAL_COMFYUI), reason=NEEDS_EMULATOR)


@pytest.fixture
def with_pack(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = start_emulator(tmp_path / "with-pack", extra_args=["--object-info", str(STUDIO_PACK)])
    try:
        yield emu
    finally:
        emu.kill()


@pytest.fixture
def without_pack(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = start_emulator(tmp_path / "without-pack")
    try:
        yield emu
    finally:
        emu.kill()


def host(emu: EmulatorProcess) -> str:
    return emu.url.removeprefix("http://")


def upload(c: httpx.Client) -> dict[str, Any]:
    r = c.post("/api/uploads", files={"file": ("room.png", sketch_png(640, 480), "image/png")})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def ran_graph(emu: EmulatorProcess, job_id: str) -> dict[str, Any] | None:
    """The graph ComfyUI ran for the prompt `job_id` (its /history entry), None if it has none."""
    entry = httpx.get(f"{emu.url}/history/{job_id}", timeout=10).json().get(job_id)
    return None if entry is None else entry["prompt"][2]


def stored_events(c: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        lines = r.read().decode().splitlines()
    return [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]


def test_a_template_job_runs_on_the_instance_that_covers_it_exactly_as_stored(
    db_url: str, tmp_path: Path, with_pack: EmulatorProcess, without_pack: EmulatorProcess
) -> None:
    address = f"{host(without_pack)},{host(with_pack)}"  # the one lacking the class is listed first
    with start_stack(db_url, tmp_path, None, comfy_ui_address=address) as stack, stack.client() as c:
        up = upload(c)
        dispatcher = stack.dispatcher_thread().start()  # running already: the queued lane is judged on notify
        try:
            job = insert_template_job(stack.settings, up["id"])
            done = wait_status(c, job.job_id, FINAL, 60)
        finally:
            dispatcher.stop()
        assert done["status"] == "succeeded", done
        total = FIRST_STEPS + SECOND_STEPS
        assert done["progress"] == {"value": total, "max": total}
        assert len(done["images"]) == 1 and done["images"][0]["index"] == 0
        assert [(p["node_id"], p["label"]) for p in done["passes"]] == [("20", "Draft")]
        assert (done["images"][0]["width"], done["images"][0]["height"]) == (320, 240)  # the upload, halved
        assert c.get(done["passes"][0]["url"]).status_code == 200
        assert read_images(stack.settings, job.job_id) == [
            ("result", "9", None, 0),
            ("pass", "20", "Draft", 1),
        ]
        assert read_job(stack.settings, job.job_id).instance == host(with_pack)

        assert ran_graph(with_pack, job.job_id) == job.graph  # the stored graph, exactly
        assert ran_graph(without_pack, job.job_id) is None
        placed = httpx.get(
            f"{with_pack.url}/view",
            params={"filename": job.graph["30"]["inputs"]["image"].split("/")[1], "subfolder": "uploads",
                    "type": "input"},
        )  # fmt: skip
        assert placed.status_code == 200 and placed.content == c.get(up["url"]).content

        events = stored_events(c, job.job_id)
        progress = [(e["data"]["value"], e["data"]["max"]) for e in events if e["type"] == "progress"]
        assert progress and all(m == total for _, m in progress), progress
        assert [v for v, _ in progress] == sorted(v for v, _ in progress) and progress[-1][0] == total
        succeeded = events[-1]
        assert succeeded["type"] == "succeeded" and len(succeeded["data"]["images"]) == 1
        assert [p["label"] for p in succeeded["data"]["passes"]] == ["Draft"]
        listed = c.get("/api/jobs").json()["items"]
        mine = next(j for j in listed if j["id"] == job.job_id)
        assert [i["id"] for i in mine["images"]] == [done["images"][0]["id"]]  # passes are not renders


def test_a_job_no_instance_covers_is_never_claimed_and_its_notice_says_why(
    db_url: str, tmp_path: Path, without_pack: EmulatorProcess
) -> None:
    with (
        start_stack(db_url, tmp_path, None, comfy_ui_address=host(without_pack)) as stack,
        stack.client() as c,
    ):
        job = insert_template_job(stack.settings, upload(c)["id"])
        stack.drain(timeout_s=30)  # judges the lane, claims nothing, and stops: nothing it could take
        queued = job_status(c, job.job_id)
        assert queued["status"] == "queued" and queued["attempts"] == 0

        def notice() -> dict[str, Any] | None:
            found: dict[str, Any] | None = job_status(c, job.job_id)["notice"]
            return found

        wait_until(lambda: notice() is not None, 15, 0.1, what="the job's notice")
        said = notice()
        assert said is not None and said["code"] == "cannot_run", said
        assert said["servers"] == [host(without_pack)]
        assert said["missing"] == [f"class {PACK_CLASS} on {host(without_pack)}"]
        assert PACK_CLASS in said["message"] and host(without_pack) in said["message"]
        with c.stream("GET", f"/api/jobs/{job.job_id}/events") as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and '"position"' in line:
                    position = json.loads(line.removeprefix("data: "))
                    break
        assert position["data"]["notice"]["code"] == "cannot_run"
        assert ran_graph(without_pack, job.job_id) is None


def test_the_stored_graph_is_resubmitted_unchanged_after_comfyui_restarts(
    db_url: str, tmp_path: Path
) -> None:
    emu = start_emulator(tmp_path / "stepped", step_ms=40, extra_args=["--object-info", str(STUDIO_PACK)])
    settings = {"stall_after_s": 2.0, "heartbeat_interval_s": 0.3}
    try:
        with start_stack(db_url, tmp_path, None, comfy_ui_address=host(emu), **settings) as stack:
            with stack.client() as c:
                graph = template_graph(
                    stack.settings.checkpoint_name, first_steps=40, second_steps=10, side=512
                )
                job = insert_template_job(stack.settings, upload(c)["id"], name="slow-two-pass", graph=graph)
                dispatcher = stack.dispatcher_thread().start()
                try:
                    wait_until(
                        lambda: job_status(c, job.job_id)["progress"]["value"] >= 2, 30, what="sampling"
                    )
                    emu.kill()
                    emu.start()
                    done = wait_status(c, job.job_id, FINAL, 90)
                finally:
                    dispatcher.stop()
                assert done["status"] == "succeeded", done
                assert done["attempts"] == 2
                assert done["progress"] == {"value": 50, "max": 50}
                assert ran_graph(emu, job.job_id) == job.graph
                assert emu.stats()["executions"][job.job_id] == 1
                assert [p["label"] for p in done["passes"]] == ["Draft"]
    finally:
        emu.kill()
