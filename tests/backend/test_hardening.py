"""A public endpoint's hardening, against the API on loopback: bodies capped before they are read (413 in
the one error shape, per route class), security headers on every answer, and the docs pages served with
their assets from the package (no CDN) and offering *Authorize*."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from backend.body_limit import MULTIPART_OVERHEAD_BYTES
from backend.main import create_app
from tests.factories import job_body, sketch_png
from tests.support.api import assert_error
from tests.support.backend import DEMO_TOKEN, Stack, make_settings, start_stack
from tests.support.net import free_port, wait_http

JSON_CAP = 64 * 1024
FIFTY_MB = 50 * 1024 * 1024


def _raw(stack: Stack, head: str, parts: Iterable[bytes], timeout_s: float = 5.0) -> tuple[int, bytes, float]:
    """Send `head` and `parts` on one socket (never the rest of a declared body); the status and body
    of the answer, and how long it took after the last part."""
    with socket.create_connection(("127.0.0.1", stack.api.port), timeout=timeout_s) as sock:
        sock.sendall(head.encode())
        for part in parts:
            sock.sendall(part)
        sent = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and _complete(data):
                break
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1], time.monotonic() - sent


def _complete(data: bytes) -> bool:
    headers, body = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"(?i)content-length: (\d+)", headers)
    return length is not None and len(body) >= int(length.group(1))


def _head(path: str, extra: str) -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEMO_TOKEN}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    )


def _too_large(body: bytes) -> None:
    error = json.loads(body)["error"]
    assert error["code"] == "too_large" and str(JSON_CAP) in error["message"], error


def test_a_50_mb_json_body_is_refused_before_it_is_read(api_stack: Stack) -> None:
    """Only the headers and 1 KiB are sent: an answer at all means the server did not wait for the rest."""
    head = _head("/api/jobs", f"Content-Length: {FIFTY_MB}\r\n")
    status, body, took_s = _raw(api_stack, head, [b'{"prompt": "' + b"a" * 1024])
    assert status == 413 and took_s < 2, (status, took_s)
    _too_large(body)


def test_a_chunked_body_is_refused_once_it_passes_the_cap(api_stack: Stack) -> None:
    """80 KiB in chunks, never the final chunk: the server counts and refuses without waiting for it."""
    chunk = b"a" * (16 * 1024)
    parts = [b"4000\r\n" + chunk + b"\r\n" for _ in range(5)]
    status, body, _ = _raw(api_stack, _head("/api/jobs", "Transfer-Encoding: chunked\r\n"), parts)
    assert status == 413
    _too_large(body)


def test_a_small_chunked_body_still_works(api_stack: Stack) -> None:
    with api_stack.client() as c:
        body = json.dumps(job_body()).encode()
        r = c.post(
            "/api/jobs", content=iter([body[:10], body[10:]]), headers={"content-type": "application/json"}
        )
    assert r.status_code == 201, r.text


def test_json_bodies_up_to_the_cap_are_read(api_stack: Stack) -> None:
    """The cap is on bytes, whatever they are: JSON padded with spaces to exactly the cap is a job."""
    raw = json.dumps(job_body()).encode()
    with api_stack.client() as c:
        at_cap = raw + b" " * (JSON_CAP - len(raw))
        assert c.post("/api/jobs", content=at_cap, headers={"content-type": "application/json"}).is_success
        r = c.post("/api/jobs", content=at_cap + b" ", headers={"content-type": "application/json"})
    assert_error(r, 413, "too_large")


def test_uploads_get_the_upload_limit_not_the_json_cap(db_url: str, tmp_path: Path) -> None:
    png = sketch_png(900, 700)
    assert len(png) > 1024  # the file alone is past the JSON routes' cap of this stack
    with start_stack(db_url, tmp_path, None, upload_max_bytes=len(png), request_body_max_bytes=1024) as stack:
        with stack.client() as c:
            at_limit = c.post("/api/uploads", files={"file": ("s.png", png, "image/png")})
            assert at_limit.status_code == 201, at_limit.text
            one_more = c.post("/api/uploads", files={"file": ("s.png", png + b"\0", "image/png")})
            assert_error(one_more, 413, "upload_too_large")  # the route's own check, past the envelope
            far = b"\0" * (len(png) + MULTIPART_OVERHEAD_BYTES + 1)
            r = c.post("/api/uploads", files={"file": ("s.png", far, "image/png")})
            assert_error(r, 413, "upload_too_large")  # refused by its Content-Length, unread


SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
}


def _has_security_headers(r: httpx.Response) -> None:
    assert {k: r.headers.get(k) for k in SECURITY} == SECURITY, (r.url, dict(r.headers))


def test_every_answer_has_the_security_headers(api_stack: Stack) -> None:
    with api_stack.client() as c, httpx.Client(base_url=api_stack.url) as anon:
        job = c.post("/api/jobs", json=job_body())
        up = c.post("/api/uploads", files={"file": ("s.png", sketch_png(), "image/png")}).json()
        answers = [
            job,
            c.get("/api/jobs"),
            anon.get("/api/jobs"),
            c.get("/api/nothing"),
            anon.get("/healthz"),
        ]
        answers += [c.get(up["url"]), anon.get("/docs"), anon.get("/openapi.json")]
        for r in answers:
            _has_security_headers(r)
        for r in answers[:4]:  # a designer's data (or a refusal of it): never stored by a cache
            assert r.headers["cache-control"] == "no-store", (r.url, r.headers)
        assert answers[5].headers["cache-control"] == "private, max-age=86400"  # the image keeps its own
        assert "strict-transport-security" not in job.headers  # plain HTTP, no proxy saying otherwise


def test_hsts_only_over_tls_through_a_trusted_proxy(db_url: str, tmp_path: Path) -> None:
    https = {"X-Forwarded-Proto": "https"}
    with start_stack(db_url, tmp_path, None) as stack, stack.client() as c:  # 127.0.0.1: uvicorn trusts it
        hsts = c.get("/api/me", headers=https).headers.get("strict-transport-security", "")
        assert hsts.startswith("max-age=") and int(hsts.split("=")[1].split(";")[0]) >= 180 * 86400
        plain = c.get("/api/me", headers={"X-Forwarded-Proto": "http"})
        assert "strict-transport-security" not in plain.headers
    with serving(db_url, tmp_path, forwarded_allow_ips="10.0.0.0/8") as url:  # the client is no proxy
        r = httpx.get(f"{url}/healthz", headers=https)
        assert r.status_code == 200 and "strict-transport-security" not in r.headers


@contextlib.contextmanager
def serving(db_url: str, tmp_path: Path, **config: str) -> Iterator[str]:
    """The app under uvicorn with these server options (the proxy trust is the server's own)."""
    app = create_app(make_settings(db_url, tmp_path / "data", None))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", **config))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=15)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|url)\s*[:=]\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_nothing_from_another_origin(api_stack: Stack, page: str) -> None:
    with httpx.Client(base_url=api_stack.url, timeout=30) as anon:
        html = anon.get(page).text
        urls = _references(html)
        assert any(u.endswith(".js") for u in urls), urls
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html
        for url in urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc and url.startswith("/"), url
            r = anon.get(url)
            assert r.status_code == 200 and r.content, (url, r.status_code)


SIGN_IN_PATHS = {"/api/auth/sign-in", "/api/auth/oidc", "/api/auth/password"}


def test_the_document_offers_authorize_and_the_error_shape(api_stack: Stack) -> None:
    doc = httpx.get(f"{api_stack.url}/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["bearerAuth"].items()
    assert {"type": "apiKey", "in": "header", "name": "x-api-key"}.items() <= schemes["apiKeyAuth"].items()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path in SIGN_IN_PATHS:  # how a browser gets a session: no credentials to offer
                assert operation["security"] == [], (method, path)
            elif path.startswith("/api/"):
                assert operation["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}], (method, path)
                assert {"401", "503"} <= set(operation["responses"]), (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400 and "text/html" in response.get("content", {}):
                    assert path.startswith("/s/"), (method, path, status)  # only the share page is a page
                elif int(status) >= 400 and path != "/readyz":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
