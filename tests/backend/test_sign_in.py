"""Email and password sign-in on a running API, both databases: a session that acts as the designer,
sign-out, lockout with back-off, the same answer for every refusal (message and time), one-time links
that set a password, and sessions ending when the account is disabled or its role changes."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text, update

from backend import audit
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.models import PasswordReset, Role, SignInSession, utcnow
from backend.users import disable_designer, set_role
from tests.support.accounts import PASSWORD, make_account, session_client, sign_in
from tests.support.api import assert_error
from tests.support.backend import Stack, start_stack

ALICE, ADMIN = "alice@studio.test", "root@studio.test"


@pytest.fixture
def accounts(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose alice has a password, and an admin; lockout after 3 failures for 1 s, then 2 s..."""
    locks = {"sign_in_max_failures": 3, "sign_in_lockout_s": 1.0, "sign_in_lockout_max_s": 4.0}
    with start_stack(db_url, tmp_path, None, **locks) as stack:
        make_account(stack.settings, "alice")
        make_account(stack.settings, "root", role="admin")
        yield stack


async def _execute(settings: Settings, statement: object) -> None:
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.execute(statement)  # type: ignore[call-overload]
    finally:
        await engine.dispose()


def test_a_session_acts_as_its_designer_until_signed_out(accounts: Stack) -> None:
    r = sign_in(accounts.url, "  Alice@Studio.TEST ", PASSWORD)  # emails are matched without case
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"].startswith("ses_") and body["designer"]["name"] == "alice"
    assert body["designer"]["role"] == "designer"
    headers = {"Authorization": f"Bearer {body['token']}"}
    with httpx.Client(base_url=accounts.url, headers=headers) as c:
        assert c.get("/api/me").json()["name"] == "alice"
        assert c.post("/api/keys", json={"name": "ci", "scopes": ["read"]}).status_code == 201
    with httpx.Client(base_url=accounts.url, headers=headers) as reloaded:  # a reload keeps the session
        assert reloaded.get("/api/me").status_code == 200
        assert reloaded.post("/api/auth/sign-out").status_code == 204
        assert_error(reloaded.get("/api/me"), 401, "unauthorized")


def test_every_refusal_answers_the_same(accounts: Stack) -> None:
    make_account(accounts.settings, "carol", password=None)  # invited, no password yet
    make_account(accounts.settings, "dave")
    asyncio.run(disable_designer(accounts.settings, "dave"))
    answers = [
        sign_in(accounts.url, ALICE, "wrong password, long enough"),
        sign_in(accounts.url, "nobody@studio.test", PASSWORD),
        sign_in(accounts.url, "carol@studio.test", PASSWORD),
        sign_in(accounts.url, "dave@studio.test", PASSWORD),  # the right password of a disabled account
    ]
    errors = [assert_error(r, 401, "invalid_credentials") for r in answers]
    assert len({(e["message"], str(e["details"])) for e in errors}) == 1


def test_an_unknown_email_takes_as_long_as_a_wrong_password(accounts: Stack) -> None:
    def timed(email: str) -> float:
        start = time.perf_counter()
        assert sign_in(accounts.url, email, f"not the password {time.time_ns()}").status_code in (401, 429)
        return time.perf_counter() - start

    # Different emails each time, under the lockout: 6 samples each, interleaved.
    known, unknown = [], []
    for i in range(6):
        make_account(accounts.settings, f"user{i}")
        known.append(timed(f"user{i}@studio.test"))
        unknown.append(timed(f"ghost{i}@studio.test"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)  # the argon2 verification is most of both


def test_lockout_backs_off_and_treats_unknown_emails_alike(accounts: Stack) -> None:
    for email in (ALICE, "ghost@studio.test"):
        for _ in range(3):
            assert_error(
                sign_in(accounts.url, email, "wrong password, long enough"), 401, "invalid_credentials"
            )
        locked = sign_in(accounts.url, email, PASSWORD)  # even the right password waits
        assert_error(locked, 429, "sign_in_locked")
        assert locked.headers["retry-after"] == "1"
    time.sleep(1.1)
    assert_error(sign_in(accounts.url, ALICE, "wrong again, long enough"), 401, "invalid_credentials")
    assert sign_in(accounts.url, ALICE, PASSWORD).headers["retry-after"] == "2"  # doubled
    time.sleep(2.1)
    assert sign_in(accounts.url, ALICE, PASSWORD).status_code == 200  # and a success clears it
    assert_error(sign_in(accounts.url, ALICE, "wrong again, long enough"), 401, "invalid_credentials")


def _link(admin: httpx.Client, name: str) -> str:
    users = admin.get("/api/admin/users").json()["items"]
    designer_id = next(u["id"] for u in users if u["name"] == name)
    r = admin.post(f"/api/admin/users/{designer_id}/password-link")
    assert r.status_code == 201, r.text
    link: str = r.json()["link"]
    assert link.startswith("http://localhost:8501/?reset=pwr_")
    return link.split("reset=", 1)[1]


def test_a_reset_link_works_once_and_ends_the_sessions(accounts: Stack) -> None:
    new = "a brand new passphrase"
    with session_client(accounts.url, ADMIN) as admin, session_client(accounts.url, ALICE) as alice:
        token = _link(admin, "alice")
        with httpx.Client(base_url=accounts.url) as anon:
            weak = anon.post("/api/auth/password", json={"token": token, "password": "password2024!"})
            assert_error(weak, 422, "weak_password")
            assert_error(anon.post("/api/auth/password", json={"token": token, "password": "short"}), 422,
                         "weak_password")  # fmt: skip
            assert anon.post("/api/auth/password", json={"token": token, "password": new}).status_code == 204
            again = anon.post("/api/auth/password", json={"token": token, "password": new + "!"})
            assert_error(again, 404, "reset_link_invalid")
        assert_error(alice.get("/api/me"), 401, "unauthorized")  # a new password ends every session
    assert_error(sign_in(accounts.url, ALICE, PASSWORD), 401, "invalid_credentials")
    assert sign_in(accounts.url, ALICE, new).status_code == 200


def test_a_reset_link_expires_and_a_newer_one_replaces_it(accounts: Stack) -> None:
    with session_client(accounts.url, ADMIN) as admin, httpx.Client(base_url=accounts.url) as anon:
        first, second = _link(admin, "alice"), _link(admin, "alice")
        body = {"token": first, "password": "a brand new passphrase"}
        assert_error(anon.post("/api/auth/password", json=body), 404, "reset_link_invalid")
        asyncio.run(_execute(accounts.settings, update(PasswordReset).values(expires_at=utcnow())))
        body["token"] = second
        assert_error(anon.post("/api/auth/password", json=body), 404, "reset_link_invalid")
        assert_error(anon.post("/api/auth/password", json={**body, "token": "pwr_forged"}), 404,
                     "reset_link_invalid")  # fmt: skip


def test_an_idle_session_ends(accounts: Stack) -> None:
    token = sign_in(accounts.url, ALICE).json()["token"]
    stale = update(SignInSession).values(expires_at=utcnow() - timedelta(seconds=1))
    asyncio.run(_execute(accounts.settings, stale))
    with httpx.Client(base_url=accounts.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert_error(c.get("/api/me"), 401, "unauthorized")


def test_a_role_change_or_disabling_ends_the_sessions_at_once(accounts: Stack) -> None:
    with session_client(accounts.url, ADMIN) as admin, session_client(accounts.url, ALICE) as alice:
        assert alice.get("/api/me").json()["role"] == "designer"  # cached in the worker now
        alice_id = alice.get("/api/me").json()["id"]
        assert admin.patch(f"/api/admin/users/{alice_id}", json={"role": "lead"}).json()["role"] == "lead"
        assert_error(alice.get("/api/me"), 401, "unauthorized")
    with session_client(accounts.url, ALICE) as alice:
        assert alice.get("/api/me").json()["role"] == "lead"  # the new role, in a new session
        asyncio.run(set_role(accounts.settings, "alice", Role.designer))  # the command line, too
        assert_error(alice.get("/api/me"), 401, "unauthorized")
    with session_client(accounts.url, ADMIN) as admin, session_client(accounts.url, ALICE) as alice:
        assert admin.patch(f"/api/admin/users/{alice_id}", json={"is_active": False}).status_code == 200
        assert_error(alice.get("/api/me"), 401, "unauthorized")
    assert_error(sign_in(accounts.url, ALICE), 401, "invalid_credentials")


def test_sign_ins_are_audited_with_their_reason_and_the_log_is_append_only(accounts: Stack) -> None:
    sign_in(accounts.url, ALICE, "wrong password, long enough")
    sign_in(accounts.url, "ghost@studio.test", PASSWORD)
    with session_client(accounts.url, ADMIN) as admin:
        lines = admin.get("/api/admin/sign-ins").json()["items"]
        assert [(e["outcome"], e["reason"]) for e in lines] == [
            ("success", ""),
            ("failure", "unknown_account"),
            ("failure", "wrong_password"),
        ]
        actions = admin.get("/api/admin/audit/actions").json()["actions"]
        assert actions == sorted(audit.ACTIONS) and "share_link_revoked" in actions  # what the page lists
        for action in actions:  # each one filters the log
            assert admin.get("/api/admin/audit", params={"action": action}).status_code == 200, action
        with session_client(accounts.url, ALICE) as alice:
            assert_error(alice.get("/api/admin/audit/actions"), 403, "forbidden_role")
        exported = admin.get("/api/admin/audit/export", params={"outcome": "failure"})
        assert exported.headers["content-type"].startswith("application/jsonl")
        assert len(exported.text.splitlines()) == 2
        assert PASSWORD not in exported.text and "wrong password" not in exported.text
    for statement in ("UPDATE audit_events SET reason = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"):
            asyncio.run(_execute(accounts.settings, text(statement)))
