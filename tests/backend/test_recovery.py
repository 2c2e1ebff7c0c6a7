"""Crashes mid-job lose nothing and run nothing twice: dispatcher SIGKILLed, ComfyUI killed and restarted.

Real processes on loopback: the dispatcher as `python -m backend.dispatcher`, the emulator as its own
process (these need the emulator's restart, so they are skipped against a real ComfyUI).
"""

from __future__ import annotations

import httpx
import pytest

from tests.factories import job_body
from tests.support.api import job_status, wait_status
from tests.support.backend import Stack, start_stack
from tests.support.comfy import EmulatorProcess
from tests.support.net import wait_until

FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def slow_stack(db_url: str, tmp_path, emulator: EmulatorProcess):
    emulator.set_faults()  # fresh emulator of this test
    with start_stack(db_url, tmp_path, emulator.url, stall_after_s=2.0, heartbeat_interval_s=0.3) as stack:
        yield stack


def submitted_count(c: httpx.Client, stack: Stack, job_id: str) -> int:
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        return r.read().decode().count("event: submitted")


def test_dispatcher_killed_mid_job_is_adopted_and_the_prompt_runs_once(slow_stack: Stack, emulator) -> None:
    with slow_stack.client() as c:
        job = c.post("/api/jobs", json=job_body(steps=60, width=1024, height=1024, num_images=2)).json()
        first = slow_stack.dispatcher_process("d1").start()
        wait_until(lambda: job_status(c, job["id"])["progress"]["value"] >= 2, 30, what="sampling")
        first.kill()
        second = slow_stack.dispatcher_process("d2").start()
        try:
            done = wait_status(c, job["id"], FINAL, 60)
        finally:
            second.terminate()
        assert done["status"] == "succeeded", (done, second.log())
        assert done["attempts"] == 1
        assert len(done["images"]) == 2
        stats = emulator.stats()
        assert stats["executions"][job["id"]] == 1, "ComfyUI ran the prompt exactly once"
        assert "adopted job" in second.log()


def test_comfyui_killed_mid_job_is_resubmitted_once_it_is_back(slow_stack: Stack, emulator) -> None:
    with slow_stack.client() as c:
        job = c.post("/api/jobs", json=job_body(steps=60, width=1024, height=1024, num_images=2)).json()
        other = c.post("/api/jobs", json=job_body()).json()
        dispatcher = slow_stack.dispatcher_thread().start()
        try:
            wait_until(lambda: job_status(c, job["id"])["progress"]["value"] >= 2, 30, what="sampling")
            emulator.kill()
            wait_until(lambda: job_status(c, job["id"])["status"] == "running", 5)
            emulator.start()
            done = wait_status(c, job["id"], FINAL, 60)
            assert wait_status(c, other["id"], FINAL, 60)["status"] == "succeeded"
        finally:
            dispatcher.stop()
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2  # the first submission died with ComfyUI
        assert emulator.stats()["executions"][job["id"]] == 1  # the restarted ComfyUI ran it once


def test_sigterm_lets_the_running_job_finish(slow_stack: Stack, emulator) -> None:
    with slow_stack.client() as c:
        job = c.post("/api/jobs", json=job_body(steps=40)).json()
        d = slow_stack.dispatcher_process().start()
        wait_until(lambda: job_status(c, job["id"])["progress"]["value"] >= 1, 30, what="sampling")
        code = d.terminate()
        assert code == 0, d.log()
        assert job_status(c, job["id"])["status"] == "succeeded"


def test_execution_error_fails_the_job_with_the_node_and_message(slow_stack: Stack, emulator) -> None:
    emulator.set_faults(fail_next=1)
    with slow_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        slow_stack.drain()
        done = job_status(c, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "comfy_execution_error"
    assert "KSampler" in done["error"]["message"] and "fault injection" in done["error"]["message"]


def test_out_of_memory_is_retried_once(slow_stack: Stack, emulator) -> None:
    emulator.set_faults(oom_next=1)
    with slow_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        slow_stack.drain()
        done = job_status(c, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2


def test_comfyui_down_at_submit_keeps_the_job_queued_until_it_is_back(slow_stack: Stack, emulator) -> None:
    emulator.kill()
    with slow_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        dispatcher = slow_stack.dispatcher_thread().start()
        try:
            assert c.get("/readyz").status_code == 503
            assert job_status(c, job["id"])["status"] == "queued"
            emulator.start()
            assert wait_status(c, job["id"], FINAL, 60)["status"] == "succeeded"
        finally:
            dispatcher.stop()
