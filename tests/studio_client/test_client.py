"""The typed client against the running stack (API on SQLite and PostgreSQL, ComfyUI, a dispatcher):
render and wait, progress, uploads, the gallery's pages, cancel, the error shape, and retries that
never render twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from studio_client import AsyncStudioClient, JobRequest, RetryPolicy, StudioClient, StudioError
from tests.factories import job_body, sketch_png
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, DispatcherThread, Stack
from tests.support.lossy_proxy import LossyProxy
from tests.support.net import free_port

PNG = b"\x89PNG\r\n\x1a\n"
FAST = RetryPolicy(attempts=4, backoff_s=0.05, max_backoff_s=0.2)
WAIT_S = 60


@pytest.fixture
def dispatcher(stack: Stack) -> Iterator[DispatcherThread]:
    d = stack.dispatcher_thread().start()
    yield d
    d.stop()


@pytest.fixture
def studio(stack: Stack) -> Iterator[StudioClient]:
    with StudioClient(stack.url, DEMO_TOKEN, retry=FAST, poll_s=0.2) as client:
        yield client


def job_ids(stack: Stack) -> list[str]:
    with stack.client() as c:
        return [j["id"] for j in c.get("/api/jobs", params={"limit": 100}).json()["items"]]


def test_render_and_wait_returns_the_finished_job_and_its_image(
    studio: StudioClient, dispatcher: DispatcherThread
) -> None:
    job = studio.render_and_wait(JobRequest(**job_body(seed=4242)), timeout_s=WAIT_S)
    assert job.status == "succeeded" and job.is_final and job.seed == 4242
    assert len(job.images) == 1 and job.images[0].seed == 4242
    assert studio.image_bytes(job.images[0].url).startswith(PNG)
    assert studio.image_bytes(job.images[0].thumbnail_url)[:2] == b"\xff\xd8"  # JPEG


async def test_the_async_client_renders_and_waits_too(stack: Stack, dispatcher: DispatcherThread) -> None:
    async with AsyncStudioClient(stack.url, DEMO_TOKEN, retry=FAST, poll_s=0.2) as studio:
        job = await studio.render_and_wait(timeout_s=WAIT_S, **job_body(num_images=2))
        assert job.status == "succeeded" and [i.index for i in job.images] == [0, 1]
        assert (await studio.image_bytes(job.images[1].url)).startswith(PNG)
        assert {s.id for s in await studio.styles()} == {"indochine", "minimalist", "none"}
        assert (await studio.me()).name


def test_follow_yields_the_jobs_events_in_order_once_each(
    studio: StudioClient, dispatcher: DispatcherThread
) -> None:
    job = studio.create_job(job_body(steps=8))
    events = list(studio.follow(job.id, timeout_s=WAIT_S))
    ids = [e.id for e in events if e.id is not None]
    assert ids == sorted(set(ids))  # increasing, no repeats
    assert events[-1].type == "succeeded" and events[-1].is_final
    steps = [e.data["value"] for e in events if e.type == "progress"]
    assert steps and steps == sorted(steps) and steps[-1] == 8
    replayed = list(studio.follow(job.id, after=ids[2]))
    assert [e.id for e in replayed] == ids[3:]  # resumes after the id it was given


async def test_async_follow_matches_the_stored_stream(stack: Stack, dispatcher: DispatcherThread) -> None:
    async with AsyncStudioClient(stack.url, DEMO_TOKEN, retry=FAST) as studio:
        job = await studio.create_job(job_body())
        live = [e async for e in studio.follow(job.id, timeout_s=WAIT_S)]
        again = [e async for e in studio.follow(job.id)]
    assert [e.id for e in again] == [e.id for e in live if e.id is not None]
    assert again[-1].type == "succeeded"


def test_an_uploaded_sketch_renders(studio: StudioClient, dispatcher: DispatcherThread) -> None:
    upload = studio.upload_sketch(sketch_png(), "plan.png", "image/png")
    assert upload.dark_lines and (upload.width, upload.height) == (640, 480)
    assert studio.upload_sketch(sketch_png(), "again.png").id == upload.id  # one upload per sketch
    assert studio.image_bytes(upload.preview_url, width=512, height=512).startswith(PNG)
    job = studio.render_and_wait(
        prompt="loft with brick walls", kind="sketch", upload_id=upload.id, style="none", timeout_s=WAIT_S
    )
    assert job.status == "succeeded" and job.kind == "sketch"
    assert job.params["upload_id"] == upload.id


def test_the_gallery_pages_newest_first_and_filters(studio: StudioClient) -> None:
    created = [
        studio.create_job(job_body(style=s)).id for s in ("none", "minimalist", "none", "none", "none")
    ]
    first = studio.list_jobs(limit=2)
    assert [j.id for j in first.items] == created[::-1][:2] and first.next_cursor
    second = studio.list_jobs(limit=2, cursor=first.next_cursor)
    assert [j.id for j in second.items] == created[::-1][2:4]
    assert [j.id for j in studio.iter_jobs(page_size=2)] == created[::-1]
    assert [j.id for j in studio.iter_jobs(page_size=3, style="minimalist")] == [created[1]]
    assert [j.id for j in studio.iter_jobs(status=["queued"], kind="text")] == created[::-1]
    today = datetime.now(UTC).date()
    assert len(studio.list_jobs(created_from=today, created_to=today.isoformat()).items) == 5
    assert studio.list_jobs(created_to=today - timedelta(days=1)).items == []


async def test_async_gallery_pages(stack: Stack) -> None:
    async with AsyncStudioClient(stack.url, DEMO_TOKEN) as studio:
        created = [(await studio.create_job(job_body())).id for _ in range(3)]
        assert [j.id async for j in studio.iter_jobs(page_size=2)] == created[::-1]


def test_cancel_ends_a_queued_job_and_wait_sees_it(studio: StudioClient) -> None:
    job = studio.create_job(job_body())  # no dispatcher: it stays queued
    assert job.status == "queued" and job.queue_position == 1
    assert studio.cancel(job.id).status == "cancelled"
    assert studio.cancel(job.id).status == "cancelled"  # safe to repeat
    assert studio.wait(job.id, timeout_s=10).status == "cancelled"
    again = studio.retry(job.id)
    assert again.retry_of == job.id and again.seed == job.seed and again.status == "queued"


def test_bad_input_is_one_typed_error_with_the_fields(studio: StudioClient) -> None:
    with pytest.raises(StudioError) as caught:
        studio.create_job(prompt="a hall", width=300, steps=0)
    err = caught.value
    assert (err.status, err.code) == (422, "invalid_input")
    assert set(err.fields()) == {"width", "steps"} and "multiple of 8" in err.fields()["width"]
    with pytest.raises(StudioError) as caught:
        studio.create_job(prompt="a hall", style="baroque")
    assert (caught.value.status, caught.value.code) == (422, "invalid_style")
    assert caught.value.fields() == {"style": "unknown style 'baroque'"}


def test_someone_elses_job_is_not_found_over_http_and_over_the_stream(stack: Stack) -> None:
    with StudioClient(stack.url, OTHER_TOKEN) as bob, StudioClient(stack.url, DEMO_TOKEN) as alice:
        job = alice.create_job(job_body())
        for call in (lambda: bob.get_job(job.id), lambda: list(bob.stream_events(job.id))):
            with pytest.raises(StudioError) as caught:
                call()
            assert (caught.value.status, caught.value.code) == (404, "job_not_found")


def test_a_wrong_token_and_an_unreachable_server_raise_the_same_type(stack: Stack) -> None:
    with StudioClient(stack.url, "not-a-token") as anon, pytest.raises(StudioError) as caught:
        anon.me()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    with StudioClient(f"http://127.0.0.1:{free_port()}", DEMO_TOKEN, retry=FAST) as nowhere:
        with pytest.raises(StudioError) as caught:
            nowhere.styles()
    assert (caught.value.status, caught.value.code) == (0, "backend_unreachable")


def test_a_create_whose_answer_is_lost_is_retried_with_the_same_key_and_renders_once(
    stack: Stack, dispatcher: DispatcherThread
) -> None:
    with (
        LossyProxy(stack.url) as proxy,
        StudioClient(proxy.url, DEMO_TOKEN, retry=FAST, poll_s=0.2) as studio,
    ):
        proxy.lose("POST", "/api/jobs")
        job = studio.render_and_wait(timeout_s=WAIT_S, **job_body())  # no WebSocket here: it polls
        posts = proxy.requests("POST", "/api/jobs")
    assert [p.lost for p in posts] == [True, False]
    keys = {p.headers.get("Idempotency-Key") for p in posts}
    assert len(keys) == 1 and None not in keys  # made by the client, sent twice
    assert job.status == "succeeded"
    assert job_ids(stack) == [job.id]


async def test_the_async_client_reuses_the_callers_key(stack: Stack) -> None:
    with LossyProxy(stack.url) as proxy:
        proxy.lose("POST", "/api/jobs")
        async with AsyncStudioClient(proxy.url, DEMO_TOKEN, retry=FAST) as studio:
            job = await studio.create_job(job_body(), idempotency_key="quote-1234")
        keys = [p.headers.get("Idempotency-Key") for p in proxy.requests("POST", "/api/jobs")]
    assert keys == ["quote-1234", "quote-1234"]
    assert job_ids(stack) == [job.id]


def test_a_retry_whose_answer_is_lost_is_not_sent_again(stack: Stack, studio: StudioClient) -> None:
    """POST /retry has no key to match a second try with: repeating it could render twice."""
    original = studio.create_job(job_body())
    with LossyProxy(stack.url) as proxy, StudioClient(proxy.url, DEMO_TOKEN, retry=FAST) as via_proxy:
        proxy.lose("POST", f"/api/jobs/{original.id}/retry")
        with pytest.raises(StudioError) as caught:
            via_proxy.retry(original.id)
        assert len(proxy.requests("POST", f"/api/jobs/{original.id}/retry")) == 1
    assert caught.value.status == 0
    assert len(job_ids(stack)) == 2  # the original and the one retry the server did make


def test_a_gateway_error_is_retried_where_repeating_is_safe(stack: Stack, studio: StudioClient) -> None:
    original = studio.create_job(job_body())
    with LossyProxy(stack.url) as proxy, StudioClient(proxy.url, DEMO_TOKEN, retry=FAST) as via_proxy:
        proxy.refuse("GET", "/api/styles", 503)
        proxy.refuse("POST", "/api/jobs", 502)
        assert len(via_proxy.styles()) == 3
        created = via_proxy.create_job(job_body())
        assert [len(proxy.requests(m, p)) for m, p in (("GET", "/api/styles"), ("POST", "/api/jobs"))] == [
            2,
            2,
        ]
        retry_path = f"/api/jobs/{original.id}/retry"
        proxy.refuse("POST", retry_path, 502)  # a gateway may answer 502 after the server did it
        with pytest.raises(StudioError) as caught:
            via_proxy.retry(original.id)
        assert caught.value.status == 502 and len(proxy.requests("POST", retry_path)) == 1
    assert sorted(job_ids(stack)) == sorted([original.id, created.id])


def test_a_request_leaves_out_what_the_server_defaults() -> None:
    request = JobRequest(
        prompt="a hall", style=None, seed=None, steps=12, webhook_url="https://example.com/h"
    )
    assert request.body() == {
        "prompt": "a hall",
        "seed": None,  # asks for a random seed
        "steps": 12,
        "webhook_url": "https://example.com/h",  # a field this client does not know yet goes through
    }
