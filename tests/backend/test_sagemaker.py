"""Jobs through SageMaker asynchronous inference, on SQLite and PostgreSQL, without AWS or a GPU.

moto on loopback plays S3, SNS, SQS and the SageMaker control plane; the stand-in of
`tests/support/sagemaker_async.py` plays the runtime (InvokeEndpointAsync) and the endpoint's instance,
posting each request to the real adapter process (`python -m mlserver.sagemaker`) in front of the
emulator. Dispatchers run as threads or as real processes that get SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.dispatcher import NoExecutor, make_executors
from backend.executors.sagemaker import INPUT_NAME, SageMakerExecutor, parse_notification
from backend.job_context import JobGateway
from backend.models import Image, Job
from tests.factories import job_body, sketch_png
from tests.support.api import job_status, wait_status
from tests.support.aws import MotoServer
from tests.support.backend import Stack, start_stack
from tests.support.comfy import EmulatorProcess
from tests.support.fault_proxy import FaultProxy
from tests.support.harness import ROOT, DispatcherProcess
from tests.support.net import wait_until
from tests.support.sagemaker_adapter import AdapterProcess, start_adapter
from tests.support.sagemaker_async import (
    OverflowEndpoint,
    SageMakerAsyncStandIn,
    create_overflow_endpoint,
)

FINAL = {"succeeded", "failed", "cancelled"}
FAST_SAGEMAKER = {
    # The stand-in gives the adapter InvocationTimeoutSeconds per request, as SageMaker does: 6 s leaves
    # room for a loaded CI machine; a dropped request expires after 2 + 6 + 2 s (grace).
    "sagemaker_invocation_timeout_s": 6,
    "sagemaker_request_ttl_s": 2,
    "sagemaker_poll_s": 0.5,
    "stall_after_s": 2.0,
    "heartbeat_interval_s": 0.3,
}


@dataclass
class Overflow:
    moto: MotoServer
    endpoint: OverflowEndpoint
    standin: SageMakerAsyncStandIn
    adapter: AdapterProcess
    emulator: EmulatorProcess

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            **self.endpoint.settings(),
            "aws_endpoint_url": self.moto.endpoint_url,
            "sagemaker_runtime_endpoint_url": self.standin.url,
            **FAST_SAGEMAKER,
            **overrides,
        }

    def s3_keys(self, prefix: str) -> list[str]:
        listing = self.moto.client("s3").list_objects_v2(Bucket=self.endpoint.bucket, Prefix=prefix)
        return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture
def overflow(moto: MotoServer, emulator: EmulatorProcess, tmp_path: Path) -> Iterator[Overflow]:
    """moto with the overflow resources, the real adapter before this test's emulator, the stand-in."""
    endpoint = create_overflow_endpoint(moto.endpoint_url)
    adapter = start_adapter(tmp_path / "adapter", emulator.url)
    standin = SageMakerAsyncStandIn(moto.endpoint_url, adapter.url).start()
    try:
        yield Overflow(moto, endpoint, standin, adapter, emulator)
    finally:
        standin.stop()
        adapter.kill()


def sagemaker_stack(
    db_url: str, tmp_path: Path, overflow: Overflow, **overrides: Any
) -> contextlib.AbstractContextManager[Stack]:
    return start_stack(
        db_url, tmp_path, None, dispatch_routing="sagemaker_only", **overflow.settings(**overrides)
    )


@pytest.fixture
def sm_stack(db_url: str, tmp_path: Path, overflow: Overflow) -> Iterator[Stack]:
    with sagemaker_stack(db_url, tmp_path, overflow) as stack:
        yield stack


def job_rows(settings: Settings) -> dict[str, tuple[Job, int]]:
    """Every job with its number of stored images, read from the database."""

    async def _read() -> dict[str, tuple[Job, int]]:
        engine = make_engine(settings)
        try:
            async with make_sessionmaker(engine)() as session:
                jobs = list(await session.scalars(select(Job)))
                images = list(await session.scalars(select(Image)))
                return {j.id: (j, sum(1 for i in images if i.job_id == j.id)) for j in jobs}
        finally:
            await engine.dispose()

    return asyncio.run(_read())


def event_types(c: Any, job_id: str) -> list[str]:
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        body = r.read().decode()
    return [line[7:] for line in body.splitlines() if line.startswith("event: ")]


# --- end to end ---------------------------------------------------------------------------------------
def test_text_and_sketch_jobs_render_through_sagemaker(sm_stack: Stack, overflow: Overflow) -> None:
    with sm_stack.client() as c:
        text = c.post("/api/jobs", json=job_body(num_images=2, width=640, height=384)).json()
        up = c.post("/api/uploads", files={"file": ("room.png", sketch_png(), "image/png")}).json()
        sketch = c.post(
            "/api/jobs", json=job_body(kind="sketch", upload_id=up["id"], style="minimalist")
        ).json()
        sm_stack.drain(timeout_s=90)
        done_text, done_sketch = job_status(c, text["id"]), job_status(c, sketch["id"])
        assert done_text["status"] == "succeeded", done_text
        assert done_sketch["status"] == "succeeded", done_sketch
        assert [i["index"] for i in done_text["images"]] == [0, 1] and len(done_sketch["images"]) == 1
        assert c.get(done_text["images"][0]["url"]).headers["content-type"] == "image/png"
        meta = c.get(f"/api/images/{done_sketch['images'][0]['id']}/meta").json()
        assert (
            meta["controlnet"] == "control_v11p_sd15_scribble.safetensors" and meta["upload_id"] == up["id"]
        )
        types = event_types(c, text["id"])
        assert types[:2] == ["queued", "claimed"] and types[-1] == "succeeded"
        assert "submitted" in types and "started" in types
    assert overflow.standin.invocations == {text["id"]: 1, sketch["id"]: 1}
    assert overflow.emulator.stats()["executions"][text["id"]] == 1
    rows = job_rows(sm_stack.settings)
    job, stored = rows[sketch["id"]]
    assert (job.executor, job.instance, stored) == ("sagemaker", overflow.endpoint.endpoint_name, 1)
    assert job.external["input"] == f"s3://{overflow.endpoint.bucket}/jobs/{sketch['id']}/input.json"
    [inv] = job.external["invocations"]
    assert inv["state"] == "accepted" and inv["inference_id"] == sketch["id"]
    assert inv["output_location"].endswith(f"jobs-output/{sketch['id']}/invocation-1.json")
    payload = json.loads(
        overflow.moto.client("s3")
        .get_object(Bucket=overflow.endpoint.bucket, Key=f"jobs/{sketch['id']}/input.json")["Body"]
        .read()
    )
    [image] = payload["images"]
    assert payload["job_id"] == sketch["id"] and image["subfolder"] == "uploads" and "sketch" not in payload
    assert any(n["inputs"].get("image") == f"uploads/{image['filename']}" for n in payload["graph"].values())


# --- crashes ------------------------------------------------------------------------------------------
def _run_until_killed(stack: Stack, overflow: Overflow, kill_at: str) -> DispatcherProcess:
    """A dispatcher process SIGKILLed from outside: once its request's input is stored on S3 (the proxy
    in front of moto sees the PUT go through), or once SageMaker accepted its invocation (the stand-in
    kills it before answering); either way before it recorded what it did."""
    if kill_at == "invoked":
        first = stack.dispatcher_process("d1")
        overflow.standin.on_invoke = lambda _: first.kill()
        first.start()
        assert first.proc is not None
        first.proc.wait(timeout=60)
        overflow.standin.on_invoke = None
        return first
    with FaultProxy(overflow.moto.endpoint_url) as proxy:
        first = stack.dispatcher_process("d1", aws_endpoint_url=proxy.url)
        proxy.after("PUT", f"/{INPUT_NAME}", first.kill)
        first.start()
        assert first.proc is not None
        first.proc.wait(timeout=60)
        assert len(proxy.fired) == 1, first.log()
    return first


def _killed_then_resumed(stack: Stack, overflow: Overflow, kill_at: str | None) -> tuple[dict, str]:
    """A job; a dispatcher process that dies (at `kill_at`, or SIGKILLed once the request runs); a second."""
    with stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        if kill_at:
            first = _run_until_killed(stack, overflow, kill_at)
            assert first.proc is not None and first.proc.returncode == -signal.SIGKILL, first.log()
            [(killed, _)] = job_rows(stack.settings).values()
            recorded = [i["state"] for i in (killed.external or {}).get("invocations", [])]
            assert recorded == ([] if kill_at == "uploaded" else ["intent"]), killed.external
        else:
            first = stack.dispatcher_process("d1").start()
            wait_until(lambda: overflow.standin.processed[job["id"]] == 1, 30, what="the request to run")
            first.kill()
        second = stack.dispatcher_process("d2").start()
        try:
            done = wait_status(c, job["id"], FINAL, 60)
        finally:
            second.terminate()
    return done, second.log()


@pytest.mark.parametrize(
    "kill_at", ["uploaded", "invoked", None], ids=["after-upload", "after-invoke", "waiting"]
)
def test_a_dispatcher_killed_mid_request_invokes_it_exactly_once(
    db_url: str, tmp_path: Path, overflow: Overflow, kill_at: str | None
) -> None:
    if kill_at is None:
        overflow.standin.delay_s = 1.5  # the result comes after the kill
    with sagemaker_stack(db_url, tmp_path, overflow) as stack:
        done, log = _killed_then_resumed(stack, overflow, kill_at)
        assert done["status"] == "succeeded", (done, log)
        assert overflow.standin.invocations[done["id"]] == 1
        assert done["attempts"] == 1 and len(done["images"]) == 1
        assert "adopted job" in log
        [(job, stored)] = job_rows(stack.settings).values()
        assert stored == 1 and len(job.external["invocations"]) == 1


def test_sigterm_hands_a_job_at_sagemaker_over_to_the_next_dispatcher(
    db_url: str, tmp_path: Path, overflow: Overflow
) -> None:
    overflow.standin.delay_s = 1.5
    with sagemaker_stack(db_url, tmp_path, overflow) as stack:
        with stack.client() as c:
            job = c.post("/api/jobs", json=job_body()).json()
            first = stack.dispatcher_process("d1").start()
            jid = job["id"]
            wait_until(lambda jid=jid: overflow.standin.invocations[jid] == 1, 30, what="the invocation")
            assert first.terminate() == 0, first.log()
            second = stack.dispatcher_process("d2").start()
            try:
                done = wait_status(c, job["id"], FINAL, 60)
            finally:
                second.terminate()
        assert done["status"] == "succeeded", (done, second.log())
        assert overflow.standin.invocations[job["id"]] == 1 and "adopted job" in second.log()


def test_two_dispatchers_share_the_notification_queue(
    db_url: str, tmp_path: Path, overflow: Overflow
) -> None:
    """A notification the other dispatcher receives is left on the queue for the holder (or found by its
    S3 check, here every 3 s): no job waits for its expiry (62 s) nor is invoked again."""
    slow_expiry = {
        "sagemaker_request_ttl_s": 30,
        "sagemaker_invocation_timeout_s": 30,
        "sagemaker_poll_s": 3.0,
        "stall_after_s": 10.0,  # no adoption between the two on a loaded machine
    }
    with sagemaker_stack(db_url, tmp_path, overflow, **slow_expiry) as stack:
        with stack.client() as c:
            ids = [c.post("/api/jobs", json=job_body(steps=2)).json()["id"] for _ in range(6)]
            one, two = stack.dispatcher_thread().start(), stack.dispatcher_thread().start()
            try:
                for job_id in ids:
                    assert wait_status(c, job_id, FINAL, 45)["status"] == "succeeded"
            finally:
                one.stop()
                two.stop()
        rows = job_rows(stack.settings)
    assert overflow.standin.invocations == dict.fromkeys(ids, 1)
    assert {job.claimed_by for job, _ in rows.values()} == {None}
    assert len({job.instance for job, _ in rows.values()}) == 1 and all(n == 1 for _, n in rows.values())


# --- failures -----------------------------------------------------------------------------------------
def test_an_adapter_error_fails_the_job_with_its_message(
    sm_stack: Stack, overflow: Overflow, caplog: pytest.LogCaptureFixture
) -> None:
    overflow.emulator.set_faults(fail_next=1)
    caplog.set_level(logging.INFO)
    with sm_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        sm_stack.drain(timeout_s=60)
        done = job_status(c, job["id"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "sagemaker_failed"
    assert "fault injection" in done["error"]["message"], done["error"]
    [failed] = [r for r in caplog.records if getattr(r, "action", None) == "job_failed"]
    assert (failed.job_id, failed.node_type) == (job["id"], "KSampler")  # type: ignore[attr-defined]
    assert overflow.standin.invocations[job["id"]] == 1
    assert overflow.s3_keys(f"jobs-failure/{job['id']}/") == [f"jobs-failure/{job['id']}/invocation-1.json"]


def test_no_result_within_ttl_and_timeout_is_invoked_again(sm_stack: Stack, overflow: Overflow) -> None:
    overflow.standin.drop_next = 1
    with sm_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        sm_stack.drain(timeout_s=60)
        done = job_status(c, job["id"])
        assert event_types(c, job["id"]).count("submitted") == 2
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and overflow.standin.invocations[job["id"]] == 2
    [(row, stored)] = job_rows(sm_stack.settings).values()
    assert stored == 1 and [i["filename"] for i in row.external["invocations"]] == [
        "invocation-1.json",
        "invocation-2.json",
    ]


def test_a_dispatcher_that_adopts_its_own_job_keeps_one_follower(
    db_url: str, tmp_path: Path, overflow: Overflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its heartbeat lapses (here: always), so every adoption pass takes its own job back; the follower it
    has goes on alone, and the dropped request is invoked again once, not once per follower."""
    monkeypatch.setattr("backend.dispatcher.ADOPT_INTERVAL_S", 0.2)
    overflow.standin.drop_next = 1
    with sagemaker_stack(db_url, tmp_path, overflow, stall_after_s=0.3, heartbeat_interval_s=30) as stack:
        with stack.client() as c:
            job = c.post("/api/jobs", json=job_body()).json()
            stack.drain(timeout_s=60)
            done = job_status(c, job["id"])
            types = event_types(c, job["id"])
    assert done["status"] == "succeeded", done
    assert "adopted" in types and types.count("submitted") == 2
    assert overflow.standin.invocations[job["id"]] == 2


def test_no_result_after_the_last_attempt_fails_the_job(
    db_url: str, tmp_path: Path, overflow: Overflow
) -> None:
    overflow.standin.drop_next = 2
    with sagemaker_stack(db_url, tmp_path, overflow, max_attempts=2) as stack:
        with stack.client() as c:
            job = c.post("/api/jobs", json=job_body()).json()
            stack.drain(timeout_s=60)
            done = job_status(c, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "sagemaker_no_result"
    assert "2 invocations" in done["error"]["message"]
    assert overflow.standin.invocations[job["id"]] == 2


def test_a_refused_invocation_goes_back_to_the_queue_and_runs_later(
    sm_stack: Stack, overflow: Overflow
) -> None:
    overflow.standin.reject_next = 1
    with sm_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        dispatcher = sm_stack.dispatcher_thread().start()
        try:
            done = wait_status(c, job["id"], FINAL, 60)
        finally:
            dispatcher.stop()
        assert "requeued" in event_types(c, job["id"])
    assert done["status"] == "succeeded", done
    assert overflow.standin.invocations[job["id"]] == 1  # the refused one never counted as queued


def test_cancel_of_a_job_at_sagemaker_ends_it_without_storing(sm_stack: Stack, overflow: Overflow) -> None:
    overflow.standin.delay_s = 1.0
    with sm_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        dispatcher = sm_stack.dispatcher_thread().start()
        try:
            wait_until(lambda: overflow.standin.invocations[job["id"]] == 1, 30, what="the invocation")
            assert c.post(f"/api/jobs/{job['id']}/cancel").json()["cancel_requested"] is True
            done = wait_status(c, job["id"], FINAL, 30)
        finally:
            dispatcher.stop()
    assert done["status"] == "cancelled" and done["images"] == []
    wait_until(overflow.standin.is_idle, 30, what="the stand-in to finish")
    assert overflow.standin.invocations[job["id"]] == 1


# --- routing ------------------------------------------------------------------------------------------
def test_a_burst_overflows_to_sagemaker_and_every_job_is_stored_once(
    db_url: str, tmp_path: Path, overflow: Overflow
) -> None:
    # One claim fills all the overflow slots, so several requests wait in the stand-in's queue (one
    # instance, about 1.7 s a job): a TTL long enough for that wait, or they would expire and be
    # invoked again by design (the expiry has its own test).
    settings = overflow.settings(sagemaker_overflow_backlog=1, comfy_prequeue=1, sagemaker_request_ttl_s=60)
    with start_stack(
        db_url, tmp_path, overflow.emulator.url, dispatch_routing="comfy_first", **settings
    ) as stack:
        with stack.client() as c:
            ids = [c.post("/api/jobs", json=job_body(steps=30)).json()["id"] for _ in range(10)]
            stack.drain(timeout_s=120)
            assert [job_status(c, i)["status"] for i in ids] == ["succeeded"] * 10
        rows = job_rows(stack.settings)
    where = {jid: job.executor for jid, (job, _) in rows.items()}
    assert set(where.values()) == {"comfy", "sagemaker"}, where
    assert all(stored == 1 for _, stored in rows.values())
    sagemaker_jobs = {jid for jid, ex in where.items() if ex == "sagemaker"}
    assert set(overflow.standin.invocations) == sagemaker_jobs
    assert all(n == 1 for n in overflow.standin.invocations.values())
    executions = overflow.emulator.stats()["executions"]
    assert all(executions[jid] == 1 for jid in ids), executions  # both paths share this emulator


def test_comfy_first_keeps_jobs_direct_below_the_backlog(
    db_url: str, tmp_path: Path, overflow: Overflow
) -> None:
    settings = overflow.settings(sagemaker_overflow_backlog=20)
    with start_stack(db_url, tmp_path, overflow.emulator.url, **settings) as stack:
        with stack.client() as c:
            ids = [c.post("/api/jobs", json=job_body(steps=2)).json()["id"] for _ in range(4)]
            stack.drain(timeout_s=60)
            assert [job_status(c, i)["status"] for i in ids] == ["succeeded"] * 4
        assert {job.executor for job, _ in job_rows(stack.settings).values()} == {"comfy"}
    assert not overflow.standin.invocations


# --- units --------------------------------------------------------------------------------------------
def _ctx(**values: Any) -> JobGateway:
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return JobGateway(settings, None, None, None, "w")  # type: ignore[arg-type]


def test_routing_settings_choose_the_executors() -> None:
    sm = {"sagemaker_endpoint_name": "render", "sagemaker_bucket": "b"}
    assert [e.executor_type for e in make_executors(_ctx(comfy_ui_address="", **sm))] == ["sagemaker"]
    assert [e.executor_type for e in make_executors(_ctx(comfy_ui_address="h:1", **sm))] == [
        "comfy",
        "sagemaker",
    ]
    only = make_executors(_ctx(comfy_ui_address="h:1", dispatch_routing="sagemaker_only", **sm))
    assert [e.executor_type for e in only] == ["sagemaker"]
    direct = make_executors(_ctx(comfy_ui_address="h:1", dispatch_routing="comfy_only", **sm))
    assert [e.executor_type for e in direct] == ["comfy"]
    with pytest.raises(NoExecutor, match="COMFY_UI_ADDRESS or SAGEMAKER_ENDPOINT_NAME"):
        make_executors(_ctx(comfy_ui_address=""))
    with pytest.raises(NoExecutor, match="SAGEMAKER_ENDPOINT_NAME"):
        make_executors(_ctx(dispatch_routing="sagemaker_only"))
    with pytest.raises(ValueError, match="SAGEMAKER_BUCKET"):
        SageMakerExecutor(_ctx(sagemaker_endpoint_name="render"))


def test_notifications_are_read_raw_or_in_an_sns_envelope() -> None:
    note = {
        "inferenceId": "j1",
        "invocationStatus": "Completed",
        "responseParameters": {"outputLocation": "s3://b/k"},
    }
    assert parse_notification(json.dumps(note)) == note
    envelope = {"Type": "Notification", "Message": json.dumps(note), "TopicArn": "arn:aws:sns:x"}
    assert parse_notification(json.dumps(envelope)) == note
    assert parse_notification("not json") is None and parse_notification('{"Type": "x"}') is None


def test_a_dispatcher_claims_no_more_jobs_than_an_instance_has_slots(
    db_url: str, tmp_path: Path, comfyui_url: str
) -> None:
    """COMFY_PREQUEUE=0: one job at a time on the instance (a claimed job's slot is reserved at once)."""
    with start_stack(db_url, tmp_path, comfyui_url, comfy_prequeue=0) as stack:
        with stack.client() as c:
            ids = [c.post("/api/jobs", json=job_body(steps=3)).json()["id"] for _ in range(4)]
            stack.drain(timeout_s=60)
            assert [job_status(c, i)["status"] for i in ids] == ["succeeded"] * 4
        jobs = sorted((job for job, _ in job_rows(stack.settings).values()), key=lambda j: j.started_at)
    for before, after in itertools.pairwise(jobs):
        assert after.started_at >= before.finished_at, "a job was claimed while the only slot was taken"


def test_the_dispatcher_refuses_to_start_without_any_executor(tmp_path: Path) -> None:
    env = {**os.environ, "COMFY_UI_ADDRESS": "", "SAGEMAKER_ENDPOINT_NAME": ""}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'studio.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "backend.dispatcher"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 1
    assert "no executor configured: set COMFY_UI_ADDRESS or SAGEMAKER_ENDPOINT_NAME" in proc.stderr.decode()
