"""The drop-in text2image endpoint and `Prefer: wait` over real HTTP, on SQLite and PostgreSQL, against
the emulator: the shapes integrations send, the 202 and error paths, signed links, no name collisions."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from backend.signed_urls import sign
from tests.support import harness
from tests.support.api import assert_error, wait_status
from tests.support.aws import MotoServer
from tests.support.backend import Stack, start_stack
from tests.support.comfy import EmulatorProcess, start_emulator

SMALL = {"width": 256, "height": 256, "steps": 3}
JUMPSTART = {"width": 256, "height": 256, "num_inference_steps": 3, "guidance_scale": 7.5}
_n = iter(range(1, 1_000_000))


def text_body(**overrides: object) -> dict[str, object]:
    """The serverless Stable Diffusion API's body, unique per call (ComfyUI's cache never short-cuts it)."""
    n = next(_n)
    return {"text": f"a teak reading nook {n}", "seed": 500 + n, **SMALL, **overrides}


@pytest.fixture
def live(stack: Stack) -> Iterator[Stack]:
    """The stack with a dispatcher rendering."""
    dispatcher = stack.dispatcher_thread().start()
    try:
        yield stack
    finally:
        dispatcher.stop()


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = start_emulator(tmp_path / "slow", step_ms=150)  # 20 steps: 3 s
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def slow(db_url: str, tmp_path: Path, slow_emulator: EmulatorProcess) -> Iterator[Stack]:
    """A stack whose renders outlast its short wait."""
    with start_stack(db_url, tmp_path, slow_emulator.url, dropin_wait_s=0.5) as stack:
        dispatcher = stack.dispatcher_thread().start()
        try:
            yield stack
        finally:
            dispatcher.stop()


def fetch_png(url: str) -> bytes:
    r = httpx.get(url, timeout=10)  # no Authorization: the URL itself is the grant
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return r.content


def test_text_body_answers_200_with_a_url_that_opens_without_a_token(live: Stack) -> None:
    with live.client() as c:
        r = c.post("/dev/text2image", json=text_body())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["statusCode"] == 200 and answer["body"] == answer["images"][0]
    assert answer["body"].startswith(f"{live.url}/api/images/")
    with Image.open(io.BytesIO(fetch_png(answer["body"]))) as img:
        assert img.size == (256, 256)


def test_jumpstart_payload_answers_base64_jpegs_with_its_accept(live: Stack) -> None:
    body = {"prompt": "a calm minimalist bedroom", "num_images_per_prompt": 2, "seed": 42, **JUMPSTART}
    with live.client() as c:
        r = c.post("/dev/text2image", json=body, headers={"Accept": "application/json;jpeg"})
        plain = c.post("/dev/text2image", json=body, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["prompt"] == body["prompt"] and len(answer["generated_images"]) == 2
    for encoded in answer["generated_images"]:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
            assert img.format == "JPEG" and img.size == (256, 256)
    assert plain.status_code == 200 and plain.json()["statusCode"] == 200  # the same render, as a URL
    assert len(plain.json()["images"]) == 2


def test_query_string_page_shows_the_render_with_the_prompt_escaped(live: Stack) -> None:
    prompt = '<script>alert("x")</script> loft & "garden"'
    with live.client() as c:
        r = c.get("/dev/text2image", params={"prompt": prompt, "seed": 7})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "<script>" not in r.text
    assert html.escape(prompt) in r.text
    src = re.search(r'<img src="([^"]+)"', r.text)
    assert src is not None
    fetch_png(html.unescape(src.group(1)))


def test_a_slow_render_answers_202_with_the_job_then_finishes(slow: Stack) -> None:
    with slow.client() as c:
        r = c.post("/dev/text2image", json=text_body(steps=20))
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.headers["location"] == f"/api/jobs/{job_id}"
        assert int(r.headers["retry-after"]) > 0
        job = wait_status(c, job_id, {"succeeded"}, timeout_s=30)
    assert len(job["images"]) == 1


def test_a_failed_render_is_an_error_status_with_the_error_shape(
    db_url: str, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    emulator.set_faults(fail_next=1)  # the sampler raises while the prompt runs
    with start_stack(db_url, tmp_path, emulator.url) as stack:
        dispatcher = stack.dispatcher_thread().start()
        try:
            with stack.client() as c:
                r = c.post("/dev/text2image", json=text_body())
        finally:
            dispatcher.stop()
    err = assert_error(r, 502, "render_failed")
    assert r.headers["location"].startswith("/api/jobs/")
    assert err["details"][0]["field"] == "job"


def test_expired_and_tampered_links_are_refused(live: Stack) -> None:
    with live.client() as c:
        url = c.post("/dev/text2image", json=text_body()).json()["body"]
    parts = urlsplit(url)
    image_id = parts.path.split("/")[3]
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{live.url}{parts.path}"
    fetch_png(url)
    secret = live.settings.image_url_secret
    expired = sign(secret, image_id, 10, now=time.time() - 60)
    assert_error(httpx.get(f"{base}?{expired.query()}"), 403, "link_expired")
    flipped = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    tampered = [
        {**query, "signature": flipped},
        {**query, "expires": str(int(query["expires"]) + 3600)},  # a longer life is a forgery
        {"expires": str(expired.expires), "signature": sign("guessed", image_id, 60).signature},
    ]
    for params in tampered:
        assert_error(httpx.get(base, params=params), 403, "invalid_signature")
    assert_error(httpx.get(base), 422, "invalid_input")  # no signature at all


def test_with_s3_storage_the_url_is_presigned_and_expires(
    db_url: str, tmp_path: Path, comfyui_url: str, moto: MotoServer
) -> None:
    moto.client("s3").create_bucket(Bucket="dropin-renders")
    s3 = {"s3_bucket": "dropin-renders", "s3_endpoint_url": moto.endpoint_url, "s3_presign_ttl_s": 120}
    with start_stack(db_url, tmp_path, comfyui_url, storage_backend="s3", **s3) as stack:
        dispatcher = stack.dispatcher_thread().start()
        try:
            with stack.client() as c:
                r = c.post("/dev/text2image", json=text_body())
        finally:
            dispatcher.stop()
    assert r.status_code == 200, r.text
    url = r.json()["body"]
    assert url.startswith(f"{moto.endpoint_url}/dropin-renders/renders/images/")
    assert "X-Amz-Expires=120" in url
    assert fetch_png(url)[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_gunicorn_worker_honours_a_link_without_a_set_secret(db_url: str, tmp_path: Path) -> None:
    """IMAGE_URL_SECRET unset: the workers share the key their master drew, so any of them opens a link."""
    with harness.process_stack(tmp_path / "procs") as procs:
        emu = procs.emulator(2.0)
        env = harness.production_env(db_url, tmp_path, harness.emulator_address(emu), api_workers=2)
        assert not env.get("IMAGE_URL_SECRET")
        procs.prestart(env)
        api = procs.api(env)
        procs.dispatcher(env)
        token = {"Authorization": f"Bearer {harness.PRODUCTION_TOKEN}"}
        r = httpx.post(f"{api.url}/dev/text2image", json=text_body(), headers=token, timeout=60)
        assert r.status_code == 200, r.text
        codes = {httpx.get(r.json()["body"], timeout=10).status_code for _ in range(20)}  # new connections
    assert codes == {200}


def test_a_burst_of_renders_in_one_second_never_shares_a_name(live: Stack) -> None:
    bodies = [text_body(text="the same sunroom") for _ in range(6)]  # same prompt, seeds differ
    with live.client() as c, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda b: c.post("/dev/text2image", json=b), bodies))
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    urls = [a.json()["body"] for a in answers]
    assert len(set(urls)) == 6
    digests = {hashlib.sha256(fetch_png(u)).hexdigest() for u in urls}
    assert len(digests) == 6, "each URL shows its own render"


def test_a_retry_with_the_idempotency_key_never_renders_twice(slow: Stack) -> None:
    body, key = text_body(steps=20), {"Idempotency-Key": "cms-retry-7"}
    with slow.client() as c:
        first = c.post("/dev/text2image", json=body, headers=key)  # the client gives up: 202
        assert first.status_code == 202, first.text
        job_id = first.json()["job_id"]
        wait_status(c, job_id, {"succeeded"}, timeout_s=30)
        again = c.post("/dev/text2image", json=body, headers=key)
        jobs = c.get("/api/jobs").json()["items"]
        image_id = jobs[0]["images"][0]["id"]
    assert again.status_code == 200, again.text
    assert [j["id"] for j in jobs] == [job_id]
    assert f"/api/images/{image_id}/shared?" in again.json()["body"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "room", "width": 513}, "width"),
        ({"text": "room", "colour": "red"}, "colour"),
        ({"prompt": "room", "num_images_per_prompt": 9}, "num_images_per_prompt"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    api_stack: Stack, body: dict[str, object], field: str
) -> None:
    with api_stack.client() as c:
        err = assert_error(c.post("/dev/text2image", json=body), 422, "invalid_input")
        assert any(d["field"] == field for d in err["details"]), err
        assert c.get("/api/jobs").json()["items"] == []


def test_text2image_needs_a_token(api_stack: Stack) -> None:
    assert_error(httpx.post(f"{api_stack.url}/dev/text2image", json={"text": "room"}), 401, "unauthorized")
    assert_error(httpx.get(f"{api_stack.url}/dev/text2image?prompt=room"), 401, "unauthorized")


def test_the_prefix_is_a_setting(db_url: str, tmp_path: Path) -> None:
    with start_stack(db_url, tmp_path, None, dropin_prefix="/prod/") as stack, stack.client() as c:
        assert_error(c.post("/dev/text2image", json={"text": "room"}), 404, "not_found")
        assert_error(c.post("/prod/text2image", json={"text": ""}), 422, "invalid_input")


def test_prefer_wait_answers_when_the_job_has_ended(live: Stack) -> None:
    with live.client() as c:
        r = c.post("/api/jobs", json={"prompt": "a sunlit hall", **SMALL}, headers={"Prefer": "wait=20"})
        plain = c.post("/api/jobs", json={"prompt": "a sunlit hall", **SMALL})
    assert r.status_code == 201, r.text
    assert r.headers["preference-applied"] == "wait=20"
    assert r.json()["status"] == "succeeded" and len(r.json()["images"]) == 1
    assert "preference-applied" not in plain.headers and plain.json()["status"] == "queued"


def test_prefer_wait_answers_after_n_seconds_and_is_capped(
    db_url: str, tmp_path: Path, slow_emulator: EmulatorProcess
) -> None:
    with start_stack(db_url, tmp_path, slow_emulator.url, prefer_wait_max_s=1) as stack:
        dispatcher = stack.dispatcher_thread().start()
        try:
            with stack.client() as c:
                t0 = time.monotonic()
                r = c.post("/api/jobs", json={"prompt": "a long hall", **SMALL, "steps": 40},
                           headers={"Prefer": "respond-async, wait=100"})  # fmt: skip
                elapsed = time.monotonic() - t0
                assert r.status_code == 201, r.text
                assert r.headers["preference-applied"] == "wait=1"
                assert r.json()["status"] in {"queued", "running"}
                assert 1.0 <= elapsed < 5.0
                c.post(f"/api/jobs/{r.json()['id']}/cancel")
        finally:
            dispatcher.stop()
