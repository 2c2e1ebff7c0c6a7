"""Faults survived: real processes on loopback are cut, killed, slowed or starved, then the promises are
checked (tests/support/invariants.py): every job ends exactly once, succeeded jobs have their images,
ComfyUI never ran a prompt more often than the backend submitted it.

These need the emulator's fault injection and restarts (skipped against a real ComfyUI) and run on SQLite
and PostgreSQL in turn.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.factories import job_body
from tests.support import invariants
from tests.support.api import wait_status
from tests.support.backend import DEMO_TOKEN, Stack, start_stack
from tests.support.comfy import EmulatorProcess, start_emulator
from tests.support.db import sqlite_db
from tests.support.harness import ApiProcess, is_alive
from tests.support.net import free_port, wait_until

pytestmark = [pytest.mark.comfyui, pytest.mark.emulator_only]
ROOT = Path(__file__).resolve().parents[2]
FINAL = set(invariants.FINAL)


@pytest.fixture
def fault_stack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, emulator.url, stall_after_s=2.0, heartbeat_interval_s=0.3) as stack:
        yield stack


def run_jobs(
    stack: Stack, emulator: EmulatorProcess, bodies: list[dict[str, Any]], timeout_s: float = 60
) -> Any:
    """Submit, let one dispatcher thread work until every job ended, return the invariant outcome."""
    with stack.client() as c:
        ids = [c.post("/api/jobs", json=b).json()["id"] for b in bodies]
        dispatcher = stack.dispatcher_thread().start()
        try:
            for job_id in ids:
                wait_status(c, job_id, FINAL, timeout_s)
        finally:
            dispatcher.stop()
        outcome = invariants.check(c, ids, emulator.stats()["executions"])
    assert outcome.problems == []
    return outcome


def test_websocket_to_comfyui_dropped_mid_job(fault_stack: Stack, emulator: EmulatorProcess) -> None:
    emulator.set_faults(drop_ws_after=4)
    outcome = run_jobs(fault_stack, emulator, [job_body(steps=30), job_body(steps=30)])
    assert outcome.count("succeeded") == 2


def test_comfyui_answering_500_to_a_third_of_requests(fault_stack: Stack, emulator: EmulatorProcess) -> None:
    emulator.set_faults(http_500_rate=0.33, seed=7)
    outcome = run_jobs(fault_stack, emulator, [job_body(seed=i) for i in range(4)])
    assert outcome.count("succeeded") == 4


def test_view_failing_once_still_stores_every_image(fault_stack: Stack, emulator: EmulatorProcess) -> None:
    emulator.set_faults(view_fail_next=1)
    outcome = run_jobs(fault_stack, emulator, [job_body(num_images=2)])
    assert outcome.count("succeeded") == 1


def test_comfyui_slow_to_start(db_url: str, tmp_path: Path) -> None:
    """The port opens seconds after the process starts (custom nodes loading): jobs wait, then run."""
    port = free_port()
    emulator = None
    with start_stack(db_url, tmp_path, f"http://127.0.0.1:{port}") as stack:
        try:
            with stack.client() as c:
                job = c.post("/api/jobs", json=job_body()).json()
                dispatcher = stack.dispatcher_thread().start()
                try:
                    time.sleep(0.5)
                    assert c.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"
                    emulator = start_emulator(
                        tmp_path / "comfy", port=port, extra_args=["--slow-start-s", "1.5"]
                    )
                    done = wait_status(c, job["id"], FINAL, 30)
                finally:
                    dispatcher.stop()
                assert done["status"] == "succeeded"
                assert invariants.check(c, [job["id"]], emulator.stats()["executions"]).problems == []
        finally:
            if emulator is not None:
                emulator.stop()


def test_an_unwritable_disk_fails_the_job_without_marking_it_done(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    """Local storage on a path that cannot be written (a file where a folder should be)."""
    blocker = tmp_path / "disk"
    blocker.write_text("not a folder")
    with start_stack(db_url, tmp_path, emulator.url, data_dir=blocker / "data") as stack:
        with stack.client() as c:
            job = c.post("/api/jobs", json=job_body()).json()
            stack.drain()
            done = c.get(f"/api/jobs/{job['id']}").json()
            assert done["status"] == "failed" and done["error"]["code"] == "storage_failed"
            assert "could not be stored" in done["error"]["message"]
            assert invariants.check(c, [job["id"]], emulator.stats()["executions"]).problems == []


def test_s3_errors_fail_the_job_and_a_healthy_bucket_serves_the_next(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess, moto: Any
) -> None:
    s3 = moto.client("s3")
    with start_stack(db_url, tmp_path, emulator.url, storage_backend="s3", s3_bucket="gone-bucket",
                      s3_endpoint_url=moto.endpoint_url) as stack:  # fmt: skip
        with stack.client() as c:
            lost = c.post("/api/jobs", json=job_body()).json()
            stack.drain()  # the bucket does not exist: NoSuchBucket on every write
            s3.create_bucket(Bucket="gone-bucket")
            ok = c.post("/api/jobs", json=job_body()).json()
            stack.drain()
            outcome = invariants.check(c, [lost["id"], ok["id"]], emulator.stats()["executions"])
        assert outcome.problems == []
        assert outcome.statuses == {lost["id"]: "failed", ok["id"]: "succeeded"}


def test_postgresql_connections_cut_mid_traffic(
    pg_db: str, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    """pg_terminate_backend on every connection of the test database while jobs run and clients poll."""
    db_url = pg_db
    database = db_url.rsplit("/", 1)[1]
    statuses: list[int] = []
    with start_stack(db_url, tmp_path, emulator.url, stall_after_s=2.0, heartbeat_interval_s=0.3) as stack:
        with stack.client() as c:
            ids = [c.post("/api/jobs", json=job_body(steps=40)).json()["id"] for _ in range(3)]
            dispatcher = stack.dispatcher_thread().start()
            try:
                for _ in range(3):
                    time.sleep(0.3)
                    with psycopg.connect(
                        "postgresql://postgres@127.0.0.1:5432/test", autocommit=True
                    ) as admin:
                        admin.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                            "AND pid <> pg_backend_pid()",
                            (database,),
                        )
                    statuses += [c.get(f"/api/jobs/{j}").status_code for j in ids]
                for job_id in ids:
                    wait_status(c, job_id, FINAL, 60)
            finally:
                dispatcher.stop()
            outcome = invariants.check(c, ids, emulator.stats()["executions"])
            errors = [c.get(f"/api/jobs/{j}").json()["error"] for j in ids]
        assert outcome.problems == []
        assert set(statuses) <= {200, 503}, statuses  # a lost connection is a 503 at worst, never a 500
        assert outcome.count("succeeded") == 3, errors


def test_sqlite_locked_by_a_long_writer_gets_503_with_retry_after(
    sqlite_template: Path, tmp_path: Path
) -> None:
    db_url = sqlite_db(sqlite_template, tmp_path)
    path = db_url.split(":///", 1)[1]
    with start_stack(db_url, tmp_path, None, sqlite_busy_timeout_ms=300) as stack:
        import sqlite3

        with stack.client() as c:
            before = len(c.get("/api/jobs").json()["items"])
            writer = sqlite3.connect(path, timeout=1)
            writer.execute("BEGIN EXCLUSIVE")  # a long writer holds the database
            try:
                r = c.post("/api/jobs", json=job_body())
            finally:
                writer.rollback()
                writer.close()
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "database_unavailable" and int(r.headers["retry-after"]) >= 1
            assert len(c.get("/api/jobs").json()["items"]) == before  # nothing half-written
            assert c.post("/api/jobs", json=job_body()).status_code == 201  # and it recovers at once


def sse_events(url: str, job_id: str, last_id: int, seen: list[tuple[int, str]], stop_after: int) -> int:
    """Follow the SSE stream from `last_id`; record (id, type); return the last id (stream cut or ended)."""
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}", "Last-Event-ID": str(last_id)}
    try:
        with httpx.stream("GET", f"{url}/api/jobs/{job_id}/events", headers=headers, timeout=30) as r:
            event_id = last_id
            for line in r.iter_lines():
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("event: ") and event_id > last_id:
                    seen.append((event_id, line[7:]))
                    last_id = event_id
                    if line[7:] in FINAL or len(seen) >= stop_after:
                        return last_id
    except (httpx.HTTPError, OSError):
        pass
    return last_id


def test_api_restarted_while_a_client_follows_a_job_sees_every_event_once(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    port = free_port()
    seen: list[tuple[int, str]] = []
    with (
        start_stack(db_url, tmp_path, emulator.url) as stack,
        ApiProcess.of(stack.settings, tmp_path, port) as api,
    ):
        with stack.client() as c:
            job = c.post("/api/jobs", json=job_body(steps=60, width=1024, height=1024)).json()
        dispatcher = stack.dispatcher_thread().start()
        try:
            last = sse_events(api.url, job["id"], 0, seen, stop_after=5)
            workers = api.worker_pids()
            assert workers, "gunicorn runs its worker"
            api.stop(signal.SIGKILL)  # the API dies under the client
            # and its worker with it: an orphan would go on serving the port the new API binds
            wait_until(
                lambda: not any(is_alive(p) for p in workers),
                timeout_s=40,
                what="the orphaned worker to exit",
            )
            api.start()  # on the same port
            while not seen or seen[-1][1] not in FINAL:
                last = sse_events(api.url, job["id"], last, seen, stop_after=10_000)
        finally:
            dispatcher.stop()
        ids = [i for i, _ in seen]
        assert ids == sorted(set(ids)), "every event once, in order"
        with stack.client() as c:
            stored = invariants.check(c, [job["id"]], emulator.stats()["executions"])
            assert stored.problems == [] and stored.count("succeeded") == 1
            with c.stream("GET", f"/api/jobs/{job['id']}/events") as r:
                replay = [int(line[4:]) for line in r.iter_lines() if line.startswith("id: ")]
        assert ids == replay  # the client saw exactly what the server stored
        assert seen[-1][1] == "succeeded"


def test_sigterm_to_the_api_lets_in_flight_requests_finish(db_url: str, tmp_path: Path) -> None:
    """Uploads whose bodies are still arriving when SIGTERM lands complete with 201; then the API exits 0."""
    results: list[int] = []
    sending = threading.Barrier(4)
    with start_stack(db_url, tmp_path, None) as stack, ApiProcess.of(stack.settings, tmp_path) as api:
        boundary = "studio-test-boundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="plan.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + _big_png()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {
            "Authorization": f"Bearer {DEMO_TOKEN}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(body)),
        }

        def slow_body() -> Iterator[bytes]:
            yield body[:1000]
            sending.wait(timeout=10)  # every request is in flight, SIGTERM goes out now
            time.sleep(0.5)
            yield body[1000:]

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.post(f"{api.url}/api/uploads", content=slow_body(), headers=headers, timeout=30)
                results.append(r.status_code)

        threads = [threading.Thread(target=upload) for _ in range(3)]
        for t in threads:
            t.start()
        sending.wait(timeout=10)
        code = api.stop(signal.SIGTERM)
        for t in threads:
            t.join()
        assert code == 0
        assert results == [201, 201, 201], results  # in-flight requests completed
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", api.port)) != 0  # and then it was gone


def _big_png() -> bytes:
    from tests.factories import sketch_png

    return sketch_png(2000, 1500)
