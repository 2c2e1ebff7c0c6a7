"""Signing in in a real browser: the identity provider's full authorization-code flow (oidc-provider-mock
on loopback, the studio a registered client with a real secret, Streamlit's st.login) and the email and
password form at 1280×800; the role decides the pages; sign-out ends the backend session and the
provider's; an account an admin disables is refused at its next request.

Screenshots of the sign-in and admin pages go to test-artifacts/e2e/ (docs/screenshots/ keeps copies)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import update

from backend.db import make_engine, make_sessionmaker
from backend.models import Designer
from frontend.auth_secrets import AuthSecretsSettings, auth_section
from tests.e2e.conftest import ROOT, choose, screenshot, wait_for_run
from tests.support.accounts import PASSWORD, make_account, session_client
from tests.support.backend import Stack, start_stack
from tests.support.db import sqlite_db
from tests.support.net import free_port, wait_http
from tests.support.oidc import Provider, mock_provider

pytestmark = [pytest.mark.e2e]
PROVIDER_NAME = "Studio SSO"
USERS = {  # the provider's accounts (sub -> claims): the studio invited them by these emails
    "lan.pham": {"email": "lan@studio.example", "email_verified": True, "name": "Lan Pham"},
    "minh.anh": {"email": "minh@studio.example", "email_verified": True, "name": "Minh Anh"},
}


@dataclass
class Sso:
    url: str
    stack: Stack
    provider: Provider


async def _demo_names(stack: Stack) -> None:
    engine = make_engine(stack.settings)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            for old, new in (("alice", "Alice Moreau"), ("bob", "Bao Nguyen"), ("carol", "Carole Dupont")):
                await session.execute(update(Designer).where(Designer.name == old).values(name=new))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Sso]:
    tmp = tmp_path_factory.mktemp("sso")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback, for the provider too
        with (
            mock_provider(f"{url}/oauth2callback", USERS) as provider,
            start_stack(
                sqlite_db(sqlite_template, tmp),
                tmp,
                None,
                oidc_issuer=provider.url,
                oidc_client_id=provider.client_id,
                studio_url=url,
            ) as stack,
        ):
            asyncio.run(_demo_names(stack))
            make_account(stack.settings, "Lan Pham", "lan@studio.example", role="lead")
            make_account(stack.settings, "Minh Anh", "minh@studio.example", password=None)
            make_account(stack.settings, "Hoa Tran", "hoa@studio.example", role="admin")
            with session_client(stack.url, "lan@studio.example") as lan:
                lan.post("/api/keys", json={"name": "Quote tool", "scopes": ["read"]})
            settings = AuthSecretsSettings(
                oidc_issuer=provider.url, oidc_client_id=provider.client_id, studio_url=url
            )
            (tmp / ".streamlit").mkdir()
            (tmp / ".streamlit" / "secrets.toml").write_text(
                auth_section(settings, provider.client_secret, secrets.token_urlsafe(32))
            )
            log = (tmp / "streamlit.log").open("w")
            env = {**os.environ, "BACKEND_URL": stack.url, "OIDC_PROVIDER_NAME": PROVIDER_NAME}
            env["HOME"] = str(tmp)  # no other secrets.toml than the one written here
            command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "frontend" / "app.py")]
            command += ["--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1"]
            command += ["--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
            command += ["--client.toolbarMode=minimal", "--theme.base=light"]
            ui = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
            try:
                wait_http(f"{url}/_stcore/health", timeout_s=30)
                yield Sso(url, stack, provider)
            finally:
                ui.terminate()
                try:
                    ui.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    ui.kill()
                log.close()


@pytest.fixture(scope="module")
def browser(sso: Sso) -> Iterator[Browser]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is missing: `make test` (or .ci/run) installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True)
        yield b
        b.close()


def new_page(browser: Browser, width: int = 1280, height: int = 800) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    context.set_default_timeout(30_000)
    return context.new_page()


def sso_sign_in(page: Page, sso: Sso, sub: str) -> None:
    page.goto(sso.url)
    page.get_by_role("button", name=f"Sign in with {PROVIDER_NAME}").click()
    expect(page.get_by_role("heading", name="Authorize Client")).to_be_visible()  # the provider's page
    page.get_by_role("button", name=sub, exact=True).click()


def nav_link(page: Page, name: str) -> Locator:
    return page.get_by_role("link", name=name, exact=True)


def test_sso_sign_in_shows_the_role_and_sign_out_ends_both_sessions(browser: Browser, sso: Sso) -> None:
    page = new_page(browser)
    sso_sign_in(page, sso, "lan.pham")
    expect(page.get_by_text("Signed in as Lan Pham · lead")).to_be_visible()
    wait_for_run(page)
    expect(nav_link(page, "Models")).to_be_visible()
    expect(nav_link(page, "Admin")).to_have_count(0)  # a lead: no admin page
    page.reload()  # the sign-in survives a reload
    expect(page.get_by_text("Signed in as Lan Pham · lead")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="End Session")).to_be_visible()  # the provider's sign-out
    page.get_by_role("button", name="End session").click()
    expect(page.get_by_role("button", name=f"Sign in with {PROVIDER_NAME}")).to_be_visible()
    expect(page.get_by_text("Signed in with")).to_have_count(0)  # the provider's sign-in is gone too
    with session_client(sso.stack.url, "hoa@studio.example") as hoa:
        lines = hoa.get("/api/admin/audit", params={"action": "sign_out"}).json()["items"]
        assert [e["actor_name"] for e in lines] == ["Lan Pham"]
        sign_ins = hoa.get("/api/admin/sign-ins", params={"outcome": "success"}).json()["items"]
        assert any(e["actor_name"] == "Lan Pham" and e["details"]["method"] == "oidc" for e in sign_ins)
    page.context.close()


def test_password_sign_in_at_1280_and_a_disabled_account_is_refused_at_its_next_request(
    browser: Browser, sso: Sso
) -> None:
    minh = new_page(browser)
    sso_sign_in(minh, sso, "minh.anh")
    expect(minh.get_by_text("Signed in as Minh Anh")).to_be_visible()
    wait_for_run(minh)

    hoa = new_page(browser, 1280, 800)
    hoa.goto(sso.url)
    expect(hoa.get_by_role("button", name=f"Sign in with {PROVIDER_NAME}")).to_be_visible()
    hoa.get_by_label("Email").fill("hoa@studio.example")
    hoa.get_by_label("Password", exact=True).fill("not the password")
    hoa.get_by_role("button", name="Sign in", exact=True).click()
    expect(hoa.get_by_test_id("stAlertContentError")).to_contain_text("do not match")
    hoa.goto(sso.url)
    hoa.get_by_label("Email").fill("hoa@studio.example")
    hoa.get_by_label("Password", exact=True).fill(PASSWORD)
    hoa.get_by_role("heading", name="Interior Studio").click()  # leave the field: nothing sent yet
    wait_for_run(hoa)
    screenshot(hoa, "sign-in")
    hoa.get_by_role("button", name="Sign in", exact=True).click()
    expect(hoa.get_by_text("Signed in as Hoa Tran · admin")).to_be_visible()
    nav_link(hoa, "Admin").click()
    expect(hoa.get_by_role("heading", name="Admin")).to_be_visible()
    wait_for_run(hoa)
    choose(hoa, "w_admin_user", "Minh Anh · minh@studio.example")
    screenshot(hoa, "admin")
    hoa.get_by_role("button", name="Disable (signs out at once)").click()
    expect(hoa.get_by_test_id("stAlertContentSuccess")).to_contain_text("Minh Anh is disabled")

    nav_link(minh, "Gallery").click()  # Minh's next request
    expect(minh.get_by_text("Your session has ended")).to_be_visible()
    minh.goto(sso.url)  # the provider still signs Minh in: the studio refuses the disabled account
    expect(minh.get_by_test_id("stAlertContentError")).to_contain_text("This account is disabled")
    expect(minh.get_by_text("Signed in as")).to_have_count(0)
    for page in (minh, hoa):
        page.context.close()
