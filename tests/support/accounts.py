"""Accounts for tests: designers with an email, a password and a role, and sign-in sessions on a stack."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from backend.auth import hash_token, new_token
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.models import Designer
from backend.passwords import hash_password

PASSWORD = "correct horse battery staple"


async def _account(settings: Settings, name: str, email: str, password: str | None, role: str) -> str:
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            designer = await session.scalar(select(Designer).where(Designer.name == name))
            if designer is None:
                designer = Designer(name=name, token_hash=hash_token(new_token()))
                session.add(designer)
            designer.email, designer.role = email, role
            designer.password_hash = await hash_password(password) if password else None
            await session.flush()
            return designer.id
    finally:
        await engine.dispose()


def make_account(
    settings: Settings,
    name: str,
    email: str | None = None,
    password: str | None = PASSWORD,
    role: str = "designer",
) -> str:
    """A designer `name` (made, or the existing one) with this email, password and role: their id."""
    return asyncio.run(_account(settings, name, email or f"{name}@studio.test", password, role))


def sign_in(url: str, email: str, password: str = PASSWORD) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30) as anon:
        return anon.post("/api/auth/sign-in", json={"email": email, "password": password})


def session_client(url: str, email: str, password: str = PASSWORD) -> httpx.Client:
    """A client holding a sign-in session of `email` (as the studio does)."""
    r = sign_in(url, email, password)
    assert r.status_code == 200, r.text
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=30)
