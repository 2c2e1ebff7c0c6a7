"""Designers' tokens on a running API: a cached token stops working as soon as its designer is disabled
(the cache spares the token lookup on every request, and must not outlive a revocation). Real API,
real notifications (PostgreSQL NOTIFY, SQLite datagrams), both databases."""

from __future__ import annotations

import asyncio

from backend.auth import CACHE_TTL_S
from backend.users import disable_designer
from tests.support.backend import OTHER_TOKEN, Stack
from tests.support.net import wait_until

REVOKED_WITHIN_S = 5.0  # well under the cache's TTL: only the notification can explain a 401 this soon


def test_a_disabled_designers_cached_token_is_refused_at_once(api_stack: Stack) -> None:
    assert REVOKED_WITHIN_S < CACHE_TTL_S / 2
    with api_stack.client(OTHER_TOKEN) as bob, api_stack.client() as alice:
        assert bob.get("/api/me").status_code == 200  # the worker now has bob's token cached
        assert alice.get("/api/me").status_code == 200
        asyncio.run(disable_designer(api_stack.settings, "bob"))
        wait_until(
            lambda: bob.get("/api/me").status_code == 401, REVOKED_WITHIN_S, what="bob's token refused"
        )
        assert bob.get("/api/me").json()["error"]["code"] == "unauthorized"
        assert alice.get("/api/me").status_code == 200  # another designer's entry is untouched
