"""Jobs through the dispatcher to ComfyUI over real loopback HTTP/WebSocket, on SQLite and PostgreSQL.

These run against the emulator by default and, unchanged, against a real ComfyUI when COMFYUI_URL is set:
`workload` sizes every job and wait from the server's /system_stats (a CPU ComfyUI gets small, short jobs),
and what a test's dispatchers submitted leaves ComfyUI's queue when the test ends, passed or failed.
"""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect as ws_connect

from tests.factories import job_body, sketch_png
from tests.support.api import assert_error, job_status, wait_status
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, Stack
from tests.support.comfy import SubmittedPrompts, Workload
from tests.support.net import wait_until
from tests.support.templates import read_job, store_graph

pytestmark = pytest.mark.comfyui


@pytest.fixture
def stack(stack: Stack, submitted_prompts: SubmittedPrompts) -> Stack:
    """The suite's stack; a job's id is its prompt id, so this test's jobs are the prompts to clear."""

    def is_a_job_here(prompt_id: str) -> bool:
        with stack.client() as c:
            return c.get(f"/api/jobs/{prompt_id}").status_code == 200

    submitted_prompts.recognise(is_a_job_here)
    return stack


def test_text_job_renders_and_its_images_download(stack: Stack, workload: Workload) -> None:
    width, height = workload.side + 128, workload.side
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body(**workload.job(num_images=2, width=width))).json()
        stack.drain(workload.render_s)
        done = job_status(c, job["id"])
        assert done["status"] == "succeeded", done
        steps = workload.steps
        assert done["attempts"] == 1 and done["progress"] == {"value": steps, "max": steps}
        assert [i["index"] for i in done["images"]] == [0, 1]
        full = c.get(done["images"][0]["url"])
        assert full.status_code == 200 and full.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(full.content)).size == (width, height)
        attachment = c.get(done["images"][1]["url"], params={"download": 1})
        assert attachment.headers["content-disposition"].startswith("attachment;")
        thumb = Image.open(io.BytesIO(c.get(done["images"][0]["thumbnail_url"]).content))
        assert thumb.format == "JPEG" and max(thumb.size) <= 384
        meta = c.get(f"/api/images/{done['images'][0]['id']}/meta").json()
        assert meta["seed"] == job["seed"] and meta["lora"]["file"] == "indochine_v1.safetensors"
        assert meta["checkpoint"] == "interiordesignsuperm_v2.safetensors"
        assert meta["params"]["prompt"] == job["params"]["prompt"]
    with stack.client(OTHER_TOKEN) as bob:  # someone else's image: 404, even with the exact URL
        assert_error(bob.get(done["images"][0]["url"]), 404, "image_not_found")
        assert_error(bob.get(done["images"][0]["thumbnail_url"]), 404, "image_not_found")


def test_sketch_job_renders_through_controlnet(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        up = c.post("/api/uploads", files={"file": ("room.jpg", sketch_png(fmt="JPEG"), "image/jpeg")}).json()
        sketch = workload.job(kind="sketch", upload_id=up["id"], style="minimalist", sketch_strength=1.1)
        job = c.post("/api/jobs", json=job_body(**sketch)).json()
        stack.drain(workload.render_s)
        done = job_status(c, job["id"])
        assert done["status"] == "succeeded", done
        assert done["kind"] == "sketch" and len(done["images"]) == 1
        meta = c.get(f"/api/images/{done['images'][0]['id']}/meta").json()
        assert meta["controlnet"] == "control_v11p_sd15_scribble.safetensors"
        assert meta["upload_id"] == up["id"]


def test_each_style_and_none_render(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        ids = [
            c.post("/api/jobs", json=job_body(**workload.job(style=s))).json()["id"]
            for s in ("indochine", "minimalist", "none")
        ]
        stack.drain(workload.render_s)
        assert [job_status(c, i)["status"] for i in ids] == ["succeeded"] * 3


def read_ws(stack: Stack, job_id: str, after: int = 0, limit: int | None = None) -> list[dict]:
    url = stack.url.replace("http://", "ws://") + f"/api/jobs/{job_id}/events?after={after}"
    out: list[dict] = []
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, open_timeout=10) as ws:
        for frame in ws:
            out.append(json.loads(frame))
            if limit is not None and len(out) >= limit:
                break
    return out


def test_progress_streams_live_and_replays_after_reconnect(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body(**workload.job(steps=12))).json()
    dispatcher = stack.dispatcher_thread().start()
    try:
        first_part = read_ws(stack, job["id"], limit=3)
        rest = read_ws(stack, job["id"], after=max(e.get("id", 0) for e in first_part))
    finally:
        dispatcher.stop()
    events = [e for e in first_part + rest if "id" in e]
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)), "every event once, in order"
    types = [e["type"] for e in events]
    assert types[0] == "queued" and types[-1] == "succeeded"
    assert "started" in types
    progress = [e["data"]["value"] for e in events if e["type"] == "progress"]
    assert progress and progress[-1] == 12 and progress == sorted(progress)
    assert events[-1]["data"]["images"][0]["id"]
    replay = read_ws(stack, job["id"])  # a late client gets the whole story, then the stream ends
    assert [e["id"] for e in replay] == ids


def test_server_sent_events_replay_and_resume_with_last_event_id(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body(**workload.job())).json()
        stack.drain(workload.render_s)
        with c.stream("GET", f"/api/jobs/{job['id']}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            body = r.read().decode()
        ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
        assert "event: succeeded" in body and len(ids) >= 4
        with c.stream("GET", f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": str(ids[-2])}) as r:
            tail = r.read().decode()
        assert [int(line[4:]) for line in tail.splitlines() if line.startswith("id: ")] == ids[-1:]
    with httpx.Client(base_url=stack.url) as anon:
        assert anon.get(f"/api/jobs/{job['id']}/events").status_code == 401
        token = anon.get(f"/api/jobs/{job['id']}/events", params={"access_token": DEMO_TOKEN})
        assert token.status_code == 200
    with stack.client(OTHER_TOKEN) as bob:
        assert_error(bob.get(f"/api/jobs/{job['id']}/events"), 404, "job_not_found")


def test_cancel_a_running_job_interrupts_it_in_comfyui(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body(**workload.long_job())).json()
        dispatcher = stack.dispatcher_thread().start()
        try:
            sampling = lambda: job_status(c, job["id"])["progress"]["value"] >= 1  # noqa: E731
            wait_until(sampling, workload.first_step_s, 0.05, what="sampling to start")
            r = c.post(f"/api/jobs/{job['id']}/cancel")
            assert r.status_code == 200 and r.json()["cancel_requested"] is True
            done = wait_status(c, job["id"], {"cancelled", "succeeded", "failed"}, workload.first_step_s)
            assert done["status"] == "cancelled"
            assert done["progress"]["value"] < workload.long_steps
            assert done["images"] == []
            assert_error(
                c.post(f"/api/jobs/{job['id']}/retry", json={"new_seed": "yes"}), 422, "invalid_input"
            )
            follow_up = c.post("/api/jobs", json=job_body(**workload.job())).json()  # ComfyUI goes on
            assert wait_status(c, follow_up["id"], {"succeeded", "failed"}, workload.render_s)["status"] == (
                "succeeded"
            )
        finally:
            dispatcher.stop()


def test_cancel_a_job_prequeued_in_comfyui_removes_it_there(stack: Stack, workload: Workload) -> None:
    ended = {"cancelled", "succeeded", "failed"}
    with stack.client() as c:
        blocker = c.post("/api/jobs", json=job_body(**workload.long_job())).json()
        waiting = c.post("/api/jobs", json=job_body(**workload.long_job())).json()
        dispatcher = stack.dispatcher_thread().start()
        try:
            prequeued = lambda: job_status(c, waiting["id"])["status"] == "running"  # noqa: E731
            wait_until(prequeued, workload.first_step_s, 0.05, what="pre-queue")
            assert c.post(f"/api/jobs/{waiting['id']}/cancel").status_code == 200
            assert wait_status(c, waiting["id"], ended, workload.first_step_s)["status"] == "cancelled"
            assert job_status(c, blocker["id"])["status"] == "running"
            c.post(f"/api/jobs/{blocker['id']}/cancel")
            assert wait_status(c, blocker["id"], ended, workload.first_step_s)["status"] == "cancelled"
        finally:
            dispatcher.stop()


def test_cancel_of_a_finished_job_is_a_conflict(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body(**workload.job())).json()
        stack.drain(workload.render_s)
        assert_error(c.post(f"/api/jobs/{job['id']}/cancel"), 409, "job_already_ended")


def test_retry_renders_the_same_image_again(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body(**workload.job(seed=4242))).json()
        stack.drain(workload.render_s)
        again = c.post(f"/api/jobs/{job['id']}/retry").json()
        stack.drain(workload.render_s)
        first, second = job_status(c, job["id"]), job_status(c, again["id"])
        assert second["status"] == "succeeded"
        a = c.get(first["images"][0]["url"]).content
        b = c.get(second["images"][0]["url"]).content
        assert Image.open(io.BytesIO(a)).tobytes() == Image.open(io.BytesIO(b)).tobytes()


def test_a_graph_comfyui_rejects_fails_with_its_reason(stack: Stack) -> None:
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        graph = read_job(stack.settings, job["id"]).graph
        assert graph is not None  # filled at creation: the dispatcher sends exactly it
        graph["4"]["inputs"]["ckpt_name"] = "no_such_model.safetensors"
        store_graph(stack.settings, job["id"], graph)
        stack.drain()
        done = job_status(c, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "comfy_rejected"
    assert "CheckpointLoaderSimple" in done["error"]["message"] and "ckpt_name" in done["error"]["message"]


def test_two_dispatchers_never_run_a_job_twice(stack: Stack, workload: Workload) -> None:
    with stack.client() as c:
        ids = [c.post("/api/jobs", json=job_body(**workload.job(steps=2))).json()["id"] for _ in range(12)]
        one, two = stack.dispatcher_thread().start(), stack.dispatcher_thread().start()
        try:
            for job_id in ids:  # one after the other: each wait is about one render
                ended = wait_status(c, job_id, {"succeeded", "failed", "cancelled"}, workload.render_s)
                assert ended["status"] == "succeeded"
        finally:
            one.stop()
            two.stop()
        submitted = [e for i in ids for e in read_ws(stack, i) if e["type"] == "submitted"]
    assert len(submitted) == len(ids)


def test_first_progress_reaches_a_client_quickly(stack: Stack, workload: Workload) -> None:
    dispatcher = stack.dispatcher_thread().start()
    try:
        with stack.client() as c:
            t0 = time.monotonic()
            job = c.post("/api/jobs", json=job_body(**workload.job())).json()
            events = read_ws(stack, job["id"])
            assert events[-1]["type"] == "succeeded"
            assert time.monotonic() - t0 < workload.render_s
    finally:
        dispatcher.stop()


def test_s3_storage_serves_renders_as_presigned_redirects(
    db_url: str, tmp_path, comfyui_url: str, moto, workload: Workload, submitted_prompts: SubmittedPrompts
) -> None:
    from tests.support.backend import start_stack

    moto.client("s3").create_bucket(Bucket="renders-bucket")
    with start_stack(db_url, tmp_path, comfyui_url, storage_backend="s3", s3_bucket="renders-bucket",
                      s3_endpoint_url=moto.endpoint_url, s3_presign_ttl_s=120) as s3_stack:  # fmt: skip
        with s3_stack.client() as c:
            job = c.post("/api/jobs", json=job_body(**workload.job())).json()
            submitted_prompts.add(job["id"])
            s3_stack.drain(workload.render_s)
            image = job_status(c, job["id"])["images"][0]
            r = c.get(image["url"], params={"download": 1})
            assert r.status_code == 307
            location = r.headers["location"]
            assert location.startswith(moto.endpoint_url) and "X-Amz-Expires=120" in location
            png = httpx.get(location)  # no bearer token: the URL itself is the short-lived grant
            assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert c.get(image["thumbnail_url"]).status_code == 307
        keys = [o["Key"] for o in moto.client("s3").list_objects_v2(Bucket="renders-bucket")["Contents"]]
        assert any(k.startswith("renders/images/") for k in keys)
        assert any(k.startswith("renders/thumbs/") for k in keys)
