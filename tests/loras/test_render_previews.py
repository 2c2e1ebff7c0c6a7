"""render_previews.py: arguments, the job contract, and every way the backend can say no.

The backend is an `httpx.MockTransport` that speaks the `/api/jobs` contract (a fake with the real
client's interface); nothing here needs a running stack.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from contract.styles import load_manifest
from loras.render_previews import (
    BackendUnavailable,
    PreviewError,
    PreviewOptions,
    draw_placeholder,
    job_payload,
    main,
    make_client,
    render_previews,
    wait_for_job,
)
from tests.support.net import free_port

FAST = PreviewOptions(poll_interval_s=0.0, job_timeout_s=5.0)


def png(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (512, 512), color).save(out, format="PNG")
    return out.getvalue()


class FakeBackend:
    """Jobs succeed after two polls unless the style is in `fail`; records what it was sent."""

    def __init__(self, fail: tuple[str, ...] = (), token: str = "t0k", image: bytes | None = None) -> None:
        self.fail, self.token, self.image = fail, token, image or png()
        self.jobs: dict[str, dict] = {}
        self.polls: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "bad token"}})
        path = request.url.path
        if request.method == "POST" and path == "/api/jobs":
            body = json.loads(request.content)
            job_id = f"job-{len(self.jobs)}"
            self.jobs[job_id] = body
            return httpx.Response(201, json={"id": job_id, "status": "queued"})
        if request.method == "GET" and path.startswith("/api/jobs/"):
            return httpx.Response(200, json=self.job(path.rsplit("/", 1)[1]))
        if request.method == "GET" and path.startswith("/api/images/"):
            return httpx.Response(307, headers={"location": f"http://bucket.s3.test/renders{path}?sig=1"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    def s3(self, request: httpx.Request) -> httpx.Response:
        """A presigned-URL download: it must not carry the designer's token."""
        if "authorization" in request.headers or request.url.params.get("sig") != "1":
            return httpx.Response(403, text="<Error>AccessDenied</Error>")
        return httpx.Response(200, content=self.image, headers={"content-type": "image/png"})

    def route(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "bucket.s3.test":
            return self.s3(request)
        return self(request)

    def job(self, job_id: str) -> dict:
        self.polls[job_id] = self.polls.get(job_id, 0) + 1
        if self.polls[job_id] < 3:
            return {"id": job_id, "status": "running", "images": [], "error": None}
        if self.jobs[job_id]["style"] in self.fail:
            error = {"code": "comfy_execution_failed", "message": "CUDA out of memory"}
            return {"id": job_id, "status": "failed", "images": [], "error": error}
        image = {
            "id": "img1",
            "url": f"/api/images/{job_id}",
            "thumbnail_url": "/t",
            "width": 512,
            "height": 512,
        }
        return {"id": job_id, "status": "succeeded", "images": [image], "error": None}


def client_for(backend, token: str = "t0k") -> httpx.Client:
    """The command's own client, with the fake backend as its transport."""
    handler = backend.route if isinstance(backend, FakeBackend) else backend
    return make_client("http://backend", token, transport=httpx.MockTransport(handler))


def test_the_payload_follows_the_jobs_contract() -> None:
    assert job_payload("indochine", PreviewOptions(seed=7)) == {
        "kind": "text",
        "prompt": PreviewOptions().prompt,
        "negative_prompt": "",
        "style": "indochine",
        "width": 512,
        "height": 512,
        "steps": 25,
        "cfg": 7.0,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "seed": 7,
        "num_images": 1,
    }


def test_every_style_gets_its_preview(tmp_path: Path) -> None:
    backend = FakeBackend()
    manifest = load_manifest()
    results = render_previews(client_for(backend), manifest, manifest.ids, FAST, out_dir=tmp_path)
    assert results == {s: str(tmp_path / f"{s}.png") for s in manifest.ids}
    assert [job["style"] for job in backend.jobs.values()] == manifest.ids
    assert {job["seed"] for job in backend.jobs.values()} == {FAST.seed}  # same room, only the style differs
    assert (tmp_path / "indochine.png").read_bytes() == backend.image  # via the presigned redirect


def test_a_failed_job_fails_only_its_style(tmp_path: Path) -> None:
    manifest = load_manifest()
    results = render_previews(
        client_for(FakeBackend(fail=("minimalist",))), manifest, manifest.ids, FAST, tmp_path
    )
    assert results["minimalist"] == "failed: job job-1 failed: comfy_execution_failed: CUDA out of memory"
    assert not (tmp_path / "minimalist.png").exists()
    assert (tmp_path / "indochine.png").exists() and (tmp_path / "none.png").exists()


def test_a_rejected_token_stops_everything(tmp_path: Path) -> None:
    manifest = load_manifest()
    with pytest.raises(BackendUnavailable, match="refused the token"):
        render_previews(client_for(FakeBackend(), token="wrong"), manifest, manifest.ids, FAST, tmp_path)


def test_a_job_that_never_finishes_times_out() -> None:
    backend = FakeBackend()
    backend.polls["job-0"] = -(10**6)  # stays "running"
    backend.jobs["job-0"] = {"style": "indochine"}
    now = iter(range(0, 1000, 10))
    with pytest.raises(PreviewError, match="still running after 30s"):
        wait_for_job(
            client_for(backend),
            "job-0",
            PreviewOptions(job_timeout_s=30),
            clock=lambda: next(now),
            sleep=lambda s: None,
        )


def test_a_validation_error_is_shown_with_the_backends_message(tmp_path: Path) -> None:
    def reject(request: httpx.Request) -> httpx.Response:
        error = {"code": "invalid_style", "message": "style must be indochine, minimalist or none"}
        return httpx.Response(422, json={"error": error})

    results = render_previews(client_for(reject), load_manifest(), ["indochine"], FAST, tmp_path)
    assert results["indochine"] == (
        "failed: POST /api/jobs: HTTP 422 invalid_style: style must be indochine, minimalist or none"
    )


def test_a_response_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    backend = FakeBackend(image=b"<html>oops</html>")
    results = render_previews(client_for(backend), load_manifest(), ["none"], FAST, tmp_path)
    assert results["none"].startswith("failed: GET /api/images/job-0 did not return an image")


def test_a_jpeg_is_saved_as_png(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 0, 0)).save(out, format="JPEG")
    render_previews(client_for(FakeBackend(image=out.getvalue())), load_manifest(), ["none"], FAST, tmp_path)
    with Image.open(tmp_path / "none.png") as im:
        assert im.format == "PNG"


# --- command line -----------------------------------------------------------------------------------------


def test_cli_needs_a_token(monkeypatch, capsys) -> None:
    monkeypatch.delenv("STUDIO_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--backend-url", "http://127.0.0.1:8000"])
    assert exc.value.code == 2
    assert "designer token is needed" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["ftp://example.com", "127.0.0.1:8000", "http://"])
def test_cli_refuses_a_bad_backend_url(url: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--backend-url", url, "--token", "x"])
    assert exc.value.code == 2
    assert "--backend-url must be an http(s) URL" in capsys.readouterr().err


def test_cli_refuses_an_unknown_style(tmp_path: Path) -> None:
    assert main(["--token", "x", "--styles", "indochine,japandi", "--out-dir", str(tmp_path)]) == 2


def test_cli_reports_an_unreachable_backend(tmp_path: Path, caplog) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["--backend-url", url, "--token", "x", "--styles", "none", "--out-dir", str(tmp_path)]) == 2
    assert f"cannot reach the backend at {url}" in caplog.text
    assert not list(tmp_path.iterdir())


def test_cli_placeholders_need_no_backend(tmp_path: Path, capsys) -> None:
    assert main(["--placeholders", "--out-dir", str(tmp_path)]) == 0
    for style_id in load_manifest().ids:
        with Image.open(tmp_path / f"{style_id}.png") as im:
            assert im.size == (256, 256)


def test_placeholders_differ_per_style() -> None:
    manifest = load_manifest()
    assert len({draw_placeholder(manifest.get(s)) for s in manifest.ids}) == len(manifest.ids)
