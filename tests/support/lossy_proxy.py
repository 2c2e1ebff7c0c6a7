"""An HTTP proxy on loopback that loses answers: the request reaches the API, its answer never comes back.

What a client sees when a load balancer or the network drops a connection after the server did the work
(the case an `Idempotency-Key` exists for):

    with LossyProxy(stack.url) as proxy:
        proxy.lose("POST", "/api/jobs")          # the first such answer is lost, the connection closed
        StudioClient(proxy.url, token).create_job(prompt="a hall")

`proxy.refuse("GET", "/api/styles", 503)` answers the next such request itself, without forwarding it
(a load balancer with no healthy target). It speaks plain HTTP only: a WebSocket upgrade gets a 502, as
from a proxy that does not carry them.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = frozenset({"host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade"})


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    lost: bool


class LossyProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.seen: list[Seen] = []
        self._to_lose: list[tuple[str, str]] = []
        self._to_refuse: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="lossy-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def lose(self, method: str, path: str) -> None:
        """Lose the answer to the next `method` request to exactly `path` (once)."""
        self._to_lose.append((method, path))

    def refuse(self, method: str, path: str, status: int) -> None:
        """Answer the next `method` request to exactly `path` with `status` itself (once)."""
        self._to_refuse[(method, path)] = status

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.split("?", 1)[0] == path]

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _refusal(self, method: str, path: str) -> int | None:
        with self._lock:
            return self._to_refuse.pop((method, path.split("?", 1)[0]), None)

    def _takes(self, method: str, path: str) -> bool:
        with self._lock:
            key = (method, path.split("?", 1)[0])
            if key in self._to_lose:
                self._to_lose.remove(key)
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _proxy(self) -> None:
                if self.headers.get("Upgrade"):
                    self.send_error(502, "no WebSocket through this proxy")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if (status := proxy._refusal(self.command, self.path)) is not None:
                    proxy.seen.append(Seen(self.command, self.path, headers, False))
                    self.send_error(status)
                    return
                answer = proxy._http.request(
                    self.command, proxy.upstream_url + self.path, headers=headers, content=body
                )
                lost = proxy._takes(self.command, self.path)
                proxy.seen.append(Seen(self.command, self.path, headers, lost))
                if lost:
                    self.close_connection = True  # the API did the work; its answer never leaves
                    return
                with contextlib.suppress(OSError):
                    self.send_response(answer.status_code)
                    for k, v in answer.headers.items():
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding":
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)

            do_GET = do_POST = _proxy

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
