"""The client's account and admin calls against a real API on SQLite and PostgreSQL, blocking and asyncio:
a session from a password, the admin's invite → one-time link → password set → sign-in, role, quotas,
disable, every key with revoke, sign-ins and the audit log (filtered, and exported as JSON lines)."""

from __future__ import annotations

import json

import pytest

from studio_client import AsyncStudioClient, StudioClient, StudioError
from tests.support.accounts import PASSWORD, make_account
from tests.support.backend import Stack

NEW_PASSWORD = "linen curtains, oak floor 7"


def test_an_admin_invites_a_designer_who_sets_a_password_and_signs_in(api_stack: Stack) -> None:
    make_account(api_stack.settings, "Hoa Tran", "hoa@studio.test", role="admin")
    with StudioClient(api_stack.url) as anonymous:
        with pytest.raises(StudioError) as refused:
            anonymous.sign_in("hoa@studio.test", "not it")
        assert (refused.value.status, refused.value.code) == (401, "invalid_credentials")
        session = anonymous.sign_in("hoa@studio.test", PASSWORD)
    assert session.designer.role == "admin" and session.token.startswith("ses_")
    with StudioClient(api_stack.url, session.token) as hoa:
        assert hoa.me().role == "admin"
        invited = hoa.invite_user("Quynh Le", "quynh@studio.test", "lead")
        assert invited.user.role == "lead" and not invited.user.has_password
        reset = invited.password_link.link.split("reset=", 1)[1]
        with StudioClient(api_stack.url) as anonymous:
            anonymous.set_password(reset, NEW_PASSWORD)
            quynh_session = anonymous.sign_in("quynh@studio.test", NEW_PASSWORD)
        quynh = StudioClient(api_stack.url, quynh_session.token)
        key = quynh.request("POST", "/api/keys", idempotent=False, json={"name": "CMS", "scopes": ["read"]})
        assert [k.name for k in hoa.all_api_keys()] == ["CMS"]
        hoa.revoke_any_api_key(key.json()["id"])
        assert hoa.all_api_keys() == []

        uid = invited.user.id
        assert hoa.set_quotas(uid, 3, None).max_active_jobs == 3
        assert hoa.update_user(uid, role="designer").role == "designer"
        with pytest.raises(StudioError) as ended:
            quynh.me()  # a role change ends the sessions
        assert ended.value.status == 401
        assert hoa.update_user(uid, is_active=False).is_active is False
        assert hoa.password_link(uid).link.startswith("http")

        refused_lines = hoa.sign_ins(outcome="failure").items
        assert [(e.action, e.reason) for e in refused_lines] == [("sign_in", "wrong_password")]
        page = hoa.audit(action="role_changed")
        assert [(e.actor_name, e.details) for e in page.items] == [
            ("Hoa Tran", {"from": "lead", "to": "designer"})
        ]
        first = hoa.audit(limit=2)
        assert len(first.items) == 2 and first.next_cursor is not None
        older = hoa.audit(limit=2, cursor=first.next_cursor)
        assert older.items[0].id < first.items[-1].id
        exported = [json.loads(line) for line in hoa.audit_export(outcome="success").splitlines()]
        assert exported and {e["outcome"] for e in exported} == {"success"}
        assert {"user_invited", "password_set", "key_revoked"} <= {e["action"] for e in exported}
        with pytest.raises(TypeError):
            hoa.audit(who="me")  # not a filter of the route
        hoa.sign_out()
        with pytest.raises(StudioError):
            hoa.users()
        quynh.close()


@pytest.fixture
def two_accounts(api_stack: Stack) -> Stack:
    """Hoa an admin, Minh a designer (made before the async test's loop runs)."""
    make_account(api_stack.settings, "Hoa Tran", "hoa@studio.test", role="admin")
    make_account(api_stack.settings, "Minh Anh", "minh@studio.test")
    return api_stack


async def test_the_async_client_signs_in_administers_and_signs_out(two_accounts: Stack) -> None:
    api_stack = two_accounts
    async with AsyncStudioClient(api_stack.url) as anonymous:
        session = await anonymous.sign_in("hoa@studio.test", PASSWORD)
        minh_session = await anonymous.sign_in("minh@studio.test", PASSWORD)
    async with (
        AsyncStudioClient(api_stack.url, session.token) as hoa,
        AsyncStudioClient(api_stack.url, minh_session.token) as minh,
    ):
        users = {u.name: u for u in await hoa.users()}
        assert users["Minh Anh"].role == "designer" and users["Minh Anh"].has_password
        with pytest.raises(StudioError) as forbidden:
            await minh.users()
        assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden_role")
        await hoa.update_user(users["Minh Anh"].id, is_active=False)
        with pytest.raises(StudioError) as disabled:
            await minh.me()
        assert disabled.value.status == 401
        assert (await hoa.audit(action="user_disabled")).items[0].target_id == users["Minh Anh"].id
        assert b'"action":"user_disabled"' in await hoa.audit_export(action="user_disabled")
        assert (await hoa.sign_ins(outcome="success")).items
        link = await hoa.password_link(users["Minh Anh"].id)
        assert "reset=" in link.link
        assert (await hoa.set_quotas(users["Minh Anh"].id, None, 10)).max_uploads_per_hour == 10
        await hoa.sign_out()
        with pytest.raises(StudioError):
            await hoa.me()
