"""Crashes mid-job lose nothing and run nothing twice: dispatcher SIGKILLed, ComfyUI killed and restarted.

Real processes on loopback: the dispatcher as `python -m backend.dispatcher`, the emulator as its own
process (these need the emulator's restart, so they are skipped against a real ComfyUI).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.factories import job_body
from tests.support.api import job_status, wait_status
from tests.support.backend import Stack, start_stack
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.net import wait_until

FINAL = {"succeeded", "failed", "cancelled"}
STEP_MS = 40  # the stepped emulator: a 512x512 step takes this long, a 1024x1024 one four times more


@pytest.fixture
def slow_stack(db_url: str, tmp_path, emulator: EmulatorProcess):
    emulator.set_faults()  # fresh emulator of this test
    with start_stack(db_url, tmp_path, emulator.url, stall_after_s=2.0, heartbeat_interval_s=0.3) as stack:
        yield stack


@pytest.fixture
def stepped(tmp_path):
    """An emulator of this test's own whose renders last seconds (to act while one runs)."""
    if REAL_COMFYUI:
        pytest.skip(NEEDS_EMULATOR)
    emu = start_emulator(tmp_path / "stepped", step_ms=STEP_MS)
    try:
        yield emu
    finally:
        emu.kill()


@pytest.fixture
def stepped_stack(db_url: str, tmp_path, stepped: EmulatorProcess):
    with start_stack(db_url, tmp_path, stepped.url, stall_after_s=2.0, heartbeat_interval_s=0.3) as stack:
        yield stack


def submitted_count(c: httpx.Client, stack: Stack, job_id: str) -> int:
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        return r.read().decode().count("event: submitted")


def stored_events(c: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """The job's events as the designer's stream replays them (SSE; the job has ended)."""
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        lines = r.read().decode().splitlines()
    return [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]


def assert_progress_never_goes_back(events: list[dict[str, Any]]) -> None:
    progress = [(e["data"]["value"], e["data"]["max"]) for e in events if e["type"] == "progress"]
    assert progress, events
    assert all(maximum > 0 for _, maximum in progress), progress
    fractions = [value / maximum for value, maximum in progress]
    assert fractions == sorted(fractions), progress
    assert [e["type"] for e in events].count("started") == 1, [e["type"] for e in events]


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


def test_a_restarted_comfyui_gets_work_within_a_second_of_answering(slow_stack: Stack, emulator) -> None:
    """Down long enough for the socket's back-off to reach seconds: the return is noticed at once."""
    with slow_stack.client() as c:
        dispatcher = slow_stack.dispatcher_thread(comfy_retry_max_s=30.0).start()
        try:
            first = c.post("/api/jobs", json=job_body()).json()
            assert wait_status(c, first["id"], FINAL, 30)["status"] == "succeeded"
            emulator.kill()
            time.sleep(13)  # the back-off doubles 0.2 s → 12.8 s meanwhile
            job = c.post("/api/jobs", json=job_body(steps=20)).json()
            emulator.start()  # returns once /system_stats answers
            answered = time.monotonic()
            wait_until(lambda: job_status(c, job["id"])["progress"]["value"] >= 1, 10, what="progress")
            waited = time.monotonic() - answered
        finally:
            dispatcher.stop()
    # The probe reconnects within its 0.5 s slice (0.3-0.6 s to the first progress on a quiet machine, 1.9 s
    # seen on a loaded CI run); without it the socket sleeps out its 12.8 s back-off, about 10 s from here.
    assert waited < 5.0, f"first progress {waited:.1f} s after ComfyUI answered again"


def test_a_restart_resubmits_the_running_job_first_and_progress_never_goes_back(
    stepped_stack: Stack, stepped: EmulatorProcess
) -> None:
    with stepped_stack.client() as c:
        running = c.post("/api/jobs", json=job_body(steps=100)).json()
        waiting = c.post("/api/jobs", json=job_body(steps=20)).json()
        dispatcher = stepped_stack.dispatcher_thread().start()
        try:
            wait_until(lambda: job_status(c, running["id"])["progress"]["value"] >= 30, 30, what="sampling")
            assert job_status(c, waiting["id"])["attempts"] == 1  # pre-queued in ComfyUI
            stepped.restart()
            done = wait_status(c, running["id"], FINAL, 60)
            assert wait_status(c, waiting["id"], FINAL, 60)["status"] == "succeeded"
        finally:
            dispatcher.stop()
        events = stored_events(c, running["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    runs = sorted(stepped.stats()["runs"], key=lambda run: run["started_at"])
    ran = [run["prompt_id"] for run in runs]
    # The running one first. (Under load the waiting one is sometimes absent from the restarted server's
    # runs although it succeeded: not yet explained; it never ran twice nor before the running one.)
    assert ran[0] == running["id"] and ran.count(waiting["id"]) <= 1, ran
    assert_progress_never_goes_back(events)
    resubmitted = [e["data"] for e in events if e["type"] == "resubmitted"]
    assert [r["attempt"] for r in resubmitted] == [2], [e["type"] for e in events]
    assert "restarted" in resubmitted[0]["reason"]
    types = [e["type"] for e in events]
    assert "progress" in types[types.index("resubmitted") :], "new steps show past the mark"


def test_an_adopted_job_keeps_its_progress_flowing(stepped_stack: Stack, stepped: EmulatorProcess) -> None:
    """ComfyUI sends progress only to the submitting client id; that dispatcher died mid-render."""
    with stepped_stack.client() as c:
        job = c.post("/api/jobs", json=job_body(steps=100, width=1024, height=1024)).json()
        first = stepped_stack.dispatcher_process("d1").start()
        wait_until(lambda: job_status(c, job["id"])["progress"]["value"] >= 2, 30, what="sampling")
        first.kill()
        second = stepped_stack.dispatcher_process("d2").start()
        try:
            done = wait_status(c, job["id"], FINAL, 90)
        finally:
            second.terminate()
        events = stored_events(c, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1, (done, second.log())
    assert stepped.stats()["executions"][job["id"]] == 1, "ComfyUI ran the prompt exactly once"
    types = [e["type"] for e in events]
    assert "adopted" in types, types
    after = types[types.index("adopted") :]
    assert after.count("progress") >= 3, f"progress froze after the adoption: {after}"
    assert_progress_never_goes_back(events)
