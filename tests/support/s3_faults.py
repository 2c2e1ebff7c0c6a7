"""An HTTP proxy in front of the moto server that answers like S3 on a bad day: 500 InternalError, 503
SlowDown, slow responses, all at once for an outage. The backend points its S3 endpoint (and so its
presigned URLs) at the proxy; boto3 cannot tell it from S3.

    proxy = FaultyS3Proxy(moto.endpoint_url).start()
    proxy.faults = S3Faults(error_rate=0.05, slowdown_rate=0.05, slow_rate=0.1, slow_s=(0.2, 1.0))
    proxy.outage = True                           # every request fails until it is False again
    proxy.counts                                  # what was injected, by kind
"""

from __future__ import annotations

import collections
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support.net import free_port

HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})
ERRORS = {
    "internal_error": (500, "InternalError", "We encountered an internal error. Please try again."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}


@dataclass
class S3Faults:
    error_rate: float = 0.0
    slowdown_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: tuple[float, float] = (0.2, 1.0)


def error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"<RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>"
    ).encode()


class FaultyS3Proxy:
    def __init__(self, upstream: str, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.faults = S3Faults()
        self.outage = False
        self.counts: collections.Counter[str] = collections.Counter()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.client = httpx.Client(base_url=self.upstream, timeout=60)
        self.server = _QuietServer(("127.0.0.1", self.port), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="s3-faults", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyS3Proxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()

    def pick(self) -> tuple[str | None, float]:
        """The error to answer with (None: forward) and the delay before answering."""
        with self.lock:
            f, roll, slow = self.faults, self.rng.random(), self.rng.random() < self.faults.slow_rate
            delay = self.rng.uniform(*f.slow_s) if slow else 0.0
        if slow:
            self.counts["slow"] += 1
        if self.outage:
            error: str | None = "slowdown" if roll < 0.5 else "internal_error"
        elif roll < f.error_rate:
            error = "internal_error"
        elif roll < f.error_rate + f.slowdown_rate:
            error = "slowdown"
        else:
            error = None
        if error:
            self.counts[error] += 1
        return error, delay

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return self.client.request(method, path, headers=headers, content=body)


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up on its keep-alive connection is routine, not a traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _handler(proxy: FaultyS3Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            body = _read_body(self)
            error, delay = proxy.pick()
            time.sleep(delay)
            if error:
                status, code, message = ERRORS[error]
                self._answer(status, {"Content-Type": "application/xml"}, error_xml(code, message))
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            r = proxy.forward(self.command, self.path, headers, body)
            out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}}
            self._answer(r.status_code, out, r.content if self.command != "HEAD" else b"", r.headers)

        def _answer(self, status: int, headers: dict[str, str], body: bytes, raw: Any = None) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            length = raw.get("content-length", "0") if self.command == "HEAD" and raw else str(len(body))
            self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
