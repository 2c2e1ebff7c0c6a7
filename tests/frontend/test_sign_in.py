"""Signing in, out and setting a password through Streamlit's AppTest, against a real backend on loopback
(and, for the identity provider, a real issuer whose ID tokens the backend verifies): refusals in a
designer's words without saying whether an email has an account, the role deciding the pages, sign-out
ending the backend session, and the one-time link's form."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from frontend.sign_in import WRONG
from tests.frontend.conftest import APP, TIMEOUT_S
from tests.support.accounts import PASSWORD, make_account
from tests.support.backend import Stack, start_stack
from tests.support.db import sqlite_db
from tests.support.oidc import CLIENT_ID, Issuer

NEW_PASSWORD = "teak shutters at dusk 42"
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "x" * 32,
    "client_id": CLIENT_ID,
    "client_secret": "not-used-here",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    "expose_tokens": ["id"],
}


@pytest.fixture
def accounts_stack(
    tmp_path: Path, sqlite_template: Path, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """A backend (no ComfyUI needed) trusting the test issuer; Minh a designer, Lan a lead, Hoa an admin."""
    from frontend.config import get_frontend_settings

    with start_stack(
        sqlite_db(sqlite_template, tmp_path),
        tmp_path,
        None,
        oidc_issuer=issuer.url,
        oidc_client_id=CLIENT_ID,
    ) as stack:
        make_account(stack.settings, "Minh Anh", "minh@studio.test")
        make_account(stack.settings, "Lan Pham", "lan@studio.test", role="lead")
        make_account(stack.settings, "Hoa Tran", "hoa@studio.test", role="admin")
        monkeypatch.setenv("BACKEND_URL", stack.url)
        get_frontend_settings.cache_clear()
        yield stack
    get_frontend_settings.cache_clear()


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT_S)


def password_sign_in(at: AppTest, email: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="w_email").input(email)
    at.text_input(key="w_password").input(password)
    return at.button(key="w_sign_in").click().run()


def errors(at: AppTest) -> list[str]:
    """The error messages as a designer reads them (Markdown escapes removed)."""
    return [e.value.replace("\\", "") for e in at.error]


def pages(at: AppTest) -> set[str]:
    """The views the navigation offers (switch_page refuses any other)."""
    offered = set()
    for view in ("studio", "gallery", "keys", "models", "admin"):
        try:
            at.switch_page(f"views/{view}.py")
        except ValueError:
            continue
        offered.add(view)
    return offered


def test_a_wrong_password_and_an_unknown_email_get_the_same_words(accounts_stack: Stack) -> None:
    at = app().run()
    assert not at.exception
    assert "w_idp_sign_in" not in [b.key for b in at.button]  # no identity provider configured
    password_sign_in(at, "minh@studio.test", "not my password")
    assert errors(at) == [WRONG]
    password_sign_in(at, "nobody@studio.test", "not my password")
    assert errors(at) == [WRONG]  # no hint whether the email has an account
    assert at.session_state["token"] is None
    at.button(key="w_sign_in").click().run()  # the form still holds the last values: refused again
    at.text_input(key="w_email").input("")
    at.button(key="w_sign_in").click().run()
    assert errors(at) == ["Enter your email and your password."]


def test_a_designer_signs_in_sees_no_admin_page_nor_the_model_form_and_signs_out(
    accounts_stack: Stack,
) -> None:
    at = password_sign_in(app().run(), "minh@studio.test")
    assert not at.exception, at.exception
    token = at.session_state["token"]
    assert token.startswith("ses_") and at.session_state["role"] == "designer"
    assert any("Signed in as **Minh Anh**" == c.value for c in at.sidebar.caption)
    assert pages(at) == {"studio", "gallery", "keys", "models"}
    with httpx.Client(base_url=accounts_stack.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/api/me").json()["role"] == "designer"
        at.button(key="sign_out").click().run()
        assert at.session_state["token"] is None
        assert c.get("/api/me").status_code == 401  # the backend session ended with the sign-out


def test_the_role_decides_the_pages_and_the_models_add_form(accounts_stack: Stack) -> None:
    lead = password_sign_in(app().run(), "lan@studio.test")
    assert lead.session_state["role"] == "lead"
    assert "admin" not in pages(lead)
    admin = password_sign_in(app().run(), "hoa@studio.test")
    assert "admin" in pages(admin)
    assert any("· admin" in c.value for c in admin.sidebar.caption)


def test_the_one_time_link_sets_a_password_once(accounts_stack: Stack) -> None:
    admin = password_sign_in(app().run(), "hoa@studio.test")
    admin.switch_page("views/admin.py").run()
    assert not admin.exception, admin.exception
    admin.text_input(key="w_invite_name").input("Quynh Le")
    admin.text_input(key="w_invite_email").input("quynh@studio.test")
    admin.button(key="w_invite").click().run()
    assert not admin.exception and not admin.error, [e.value for e in admin.error]
    link = admin.code[0].value
    assert link.startswith("http://localhost:8501/?reset=")
    reset = link.split("reset=", 1)[1]

    at = app()
    at.query_params["reset"] = reset
    at.run()
    assert at.title[0].value == "Set your password"
    at.text_input(key="w_new_password").input(NEW_PASSWORD)
    at.text_input(key="w_new_password_2").input(NEW_PASSWORD + "!")
    at.button(key="w_set_password").click().run()
    assert "differ" in at.error[0].value
    at.text_input(key="w_new_password").input("password")
    at.text_input(key="w_new_password_2").input("password")
    at.button(key="w_set_password").click().run()
    assert "cannot be used" in at.error[0].value
    at.text_input(key="w_new_password").input(NEW_PASSWORD)
    at.text_input(key="w_new_password_2").input(NEW_PASSWORD)
    at.button(key="w_set_password").click().run()
    assert not at.exception
    assert "password is set" in at.success[0].value and "reset" not in at.query_params
    password_sign_in(at, "quynh@studio.test", NEW_PASSWORD)
    assert at.session_state["designer"]["name"] == "Quynh Le"

    again = app()
    again.query_params["reset"] = reset
    again.run()
    again.text_input(key="w_new_password").input(NEW_PASSWORD)
    again.text_input(key="w_new_password_2").input(NEW_PASSWORD)
    again.button(key="w_set_password").click().run()
    assert "not valid" in again.error[0].value  # used once: refused after


def test_the_identity_provider_s_id_token_becomes_a_backend_session(
    accounts_stack: Stack, issuer: Issuer
) -> None:
    at = app()
    at.secrets["auth"] = AUTH
    at.run()
    assert at.button(key="w_idp_sign_in").label == "Sign in with your identity provider"

    signed = app()
    signed.secrets["auth"] = AUTH
    id_token = issuer.token(sub="lan-1", email="lan@studio.test", name="Lan")
    signed.user = {"is_logged_in": True, "email": "lan@studio.test", "tokens": {"id": id_token}}
    signed.run()
    assert not signed.exception, signed.exception
    assert signed.session_state["token"].startswith("ses_")
    assert signed.session_state["role"] == "lead"
    assert id_token not in str(signed.session_state.to_dict())  # only the backend session is kept

    stranger = app()
    stranger.secrets["auth"] = AUTH
    token = issuer.token(sub="x-9", email="stranger@elsewhere.test")
    stranger.user = {"is_logged_in": True, "email": "stranger@elsewhere.test", "tokens": {"id": token}}
    stranger.run()
    assert "not invited" in stranger.error[0].value
    assert stranger.session_state["token"] is None
    assert stranger.button(key="w_idp_switch").label == "Use another account"

    expired = app()
    expired.secrets["auth"] = AUTH
    old = issuer.token(sub="lan-1", email="lan@studio.test", exp=1, iat=0)
    expired.user = {"is_logged_in": True, "email": "lan@studio.test", "tokens": {"id": old}}
    expired.run()
    assert "expired or was refused" in expired.error[0].value
