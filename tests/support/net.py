"""Loopback helpers for tests that start real servers: free ports and readiness polling."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "condition"
) -> None:
    """Poll `predicate` until it is true; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def answers(url: str, ok: Callable[[httpx.Response], bool] | None = None) -> bool:
    """Whether GET `url` answers now (2xx, or whatever `ok` accepts)."""
    try:
        r = httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        return False
    return ok(r) if ok else r.is_success


def wait_http(url: str, timeout_s: float = 20.0, ok: Callable[[httpx.Response], bool] | None = None) -> None:
    """Wait until GET `url` answers (2xx, or whatever `ok` accepts)."""
    wait_until(lambda: answers(url, ok), timeout_s, 0.05, f"{url} to answer")
