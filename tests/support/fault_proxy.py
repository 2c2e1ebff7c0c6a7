"""An HTTP proxy on loopback that runs a fault right after a matching request reached its server.

Faults are injected from outside the code under test, as the emulator's admin routes do: a process is
pointed at the proxy instead of its server (e.g. a dispatcher's AWS_ENDPOINT_URL in front of moto), and
the test says what happens once a request went through, before its answer goes back:

    with FaultProxy(moto.endpoint_url) as proxy:
        dispatcher = stack.dispatcher_process("d1", aws_endpoint_url=proxy.url)
        proxy.after("PUT", "/input.json", dispatcher.kill)   # SIGKILLed once its S3 upload is stored

Every other request is forwarded unchanged (moto does not check signatures, so the Host is free).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = frozenset({"host", "connection", "content-length", "transfer-encoding", "expect", "keep-alive"})
UPSTREAM_TIMEOUT_S = 60.0


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.faults: list[tuple[str, str, Callable[[], object]]] = []
        self.fired: list[str] = []  # paths of the requests a fault ran after
        self._http = httpx.Client(timeout=UPSTREAM_TIMEOUT_S)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def after(self, method: str, path_suffix: str, action: Callable[[], object]) -> None:
        """Run `action` once, after the first `method` request whose path ends with `path_suffix`."""
        self.faults.append((method, path_suffix, action))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _fault_for(self, method: str, path: str) -> Callable[[], object] | None:
        for n, (m, suffix, action) in enumerate(self.faults):
            if m == method and path.split("?", 1)[0].endswith(suffix):
                del self.faults[n]
                self.fired.append(path)
                return action
        return None

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        kept = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        answer = self._http.request(method, self.upstream_url + path, headers=kept, content=body)
        action = self._fault_for(method, path)
        if action is not None:
            action()
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers boto3's `Expect: 100-continue` at once

            def _proxy(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = proxy.forward(self.command, self.path, dict(self.headers.items()), body)
                head = self.command == "HEAD"
                length = answer.headers.get("Content-Length", "0") if head else str(len(answer.content))
                with contextlib.suppress(OSError):  # the caller may be the process the fault killed
                    self.send_response(answer.status_code)
                    for k, v in answer.headers.items():
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding":
                            self.send_header(k, v)
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    if not head:
                        self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _proxy

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
