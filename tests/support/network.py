"""`no_network`: a test in which every connection beyond this machine's loopback fails, and is recorded.

The suite's servers (API, emulator, PostgreSQL) are on 127.0.0.1, so they keep working; whatever tries
to reach anything else (a library fetching model weights, say) gets `NetworkBlocked` before a packet is
sent, and the test fails even when the library swallowed the error. Name resolution is guarded too: only
loopback names and numeric loopback addresses resolve.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

ALLOWED_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class NetworkBlocked(OSError):
    """A connection beyond the loopback, refused by the test's guard."""


class Guard:
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def check(self, family: int, address: Any) -> None:
        if family == socket.AF_UNIX:
            return
        host = address[0] if isinstance(address, tuple) else str(address)
        if str(host) not in ALLOWED_HOSTS:
            self.attempts.append(f"{host}:{address[1] if isinstance(address, tuple) else ''}")
            raise NetworkBlocked(f"the test blocks connections beyond the loopback: {address!r}")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    guard = Guard()
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> None:
        guard.check(self.family, address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        guard.check(self.family, address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            name = host.decode() if isinstance(host, bytes) else str(host)
            guard.check(socket.AF_INET, (name, args[0] if args else 0))
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield guard
    assert guard.attempts == [], f"connections beyond the loopback were attempted: {guard.attempts}"
