"""No secret reaches a log or the audit log: passwords (right and wrong), session tokens, one-time
link tokens, API keys and designer tokens, on a stack whose every logger writes at DEBUG."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import PASSWORD, make_account, session_client, sign_in
from tests.support.backend import DEMO_TOKEN, start_stack


def test_secrets_never_reach_the_logs_or_the_audit_log(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [PASSWORD, DEMO_TOKEN, "a wrong password, typed once"]
    with start_stack(db_url, tmp_path, None, log_level="DEBUG") as stack:
        make_account(stack.settings, "alice")
        make_account(stack.settings, "root", role="admin")
        sign_in(stack.url, "alice@studio.test", secrets[2])
        sign_in(stack.url, "nobody@studio.test", PASSWORD)
        with session_client(stack.url, "root@studio.test") as admin, stack.client() as alice:
            secrets.append(str(admin.headers["authorization"]).split()[1])
            secrets.append(alice.post("/api/keys", json={"name": "ci", "scopes": ["read"]}).json()["key"])
            users = admin.get("/api/admin/users").json()["items"]
            alice_id = next(u["id"] for u in users if u["name"] == "alice")
            link = admin.post(f"/api/admin/users/{alice_id}/password-link").json()["link"]
            secrets.append(link.split("reset=", 1)[1])
            new_password = "another long passphrase"
            secrets.append(new_password)
            with httpx.Client(base_url=stack.url) as anon:
                anon.post("/api/auth/password", json={"token": secrets[-2], "password": new_password})
            secrets.append(sign_in(stack.url, "alice@studio.test", new_password).json()["token"])
            exported = admin.get("/api/admin/audit/export").text
    assert len(exported.splitlines()) >= 6  # sign-ins, key, link, password set...
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in secrets:
        assert secret not in exported
        assert secret not in logged
