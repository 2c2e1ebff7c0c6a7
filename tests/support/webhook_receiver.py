"""A webhook receiver on loopback whose answers a test scripts: 200, an error status, a hang, a hold."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Each POST is recorded when it arrives, then answered by the next scripted mode (then 200):
    an int is that status, "hang" sleeps `hang_s` before answering, "hold" waits for `release()`."""

    def __init__(self, modes: list[int | str] | None = None, hang_s: float = 5.0) -> None:
        self.modes = list(modes or [])
        self.hang_s = hang_s
        self.received: list[Received] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]

    def release(self) -> None:
        self.released.set()

    def _next_mode(self, request: Received) -> int | str:
        with self._lock:
            self.received.append(request)
            return self.modes.pop(0) if self.modes else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                mode = receiver._next_mode(Received(headers, body))
                if mode == "hang":
                    time.sleep(receiver.hang_s)
                elif mode == "hold":
                    receiver.released.wait(60)
                with contextlib.suppress(OSError):  # the sender may have gone (timeout, SIGKILL)
                    self.send_response(mode if isinstance(mode, int) else 200)
                    self.send_header("content-length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@contextlib.contextmanager
def start_receiver(modes: list[int | str] | None = None, hang_s: float = 5.0) -> Iterator[Receiver]:
    receiver = Receiver(modes, hang_s)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        receiver.server.shutdown()
        receiver.server.server_close()
