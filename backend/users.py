"""Designer accounts from the command line: `python -m backend.users create NAME` prints a new token
(shown once; only its hash is stored), `list`, `rotate NAME`, `disable NAME`,
`role NAME designer|lead|admin`, `link NAME [--email EMAIL]` (a one-time link to set a password: how the
first admin signs in to the studio). Disabling and a new role end the designer's sign-in sessions; each
change is audited (actor "cli")."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy import select, update

from backend import audit, notify, sessions, sign_in
from backend.audit import Actor
from backend.auth import hash_token, new_token
from backend.config import Settings, get_settings
from backend.db import make_engine, make_sessionmaker
from backend.models import Designer, Role
from backend.notify import Notifier


class UserError(Exception):
    """A command that cannot be carried out (exists already, no such designer)."""


async def create_designer(settings: Settings, name: str, token: str | None = None) -> str:
    """Create a designer; returns the token (a new random one unless given)."""
    token = token or new_token()
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            if await session.scalar(select(Designer).where(Designer.name == name)):
                raise UserError(f"designer {name!r} already exists")
            session.add(Designer(name=name, token_hash=hash_token(token)))
    finally:
        await engine.dispose()
    return token


async def ensure_designer(settings: Settings, name: str, token: str) -> bool:
    """Create the designer with this token, or re-point an existing one to it. True when changed."""
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            designer = await session.scalar(select(Designer).where(Designer.name == name))
            if designer is None:
                session.add(Designer(name=name, token_hash=hash_token(token)))
                return True
            if designer.token_hash != hash_token(token) or not designer.is_active:
                designer.token_hash, designer.is_active = hash_token(token), True
                return True
            return False
    finally:
        await engine.dispose()


CLI = Actor(None, "cli")


async def _set(settings: Settings, name: str, audited: str | None = None, **values: object) -> None:
    """Change a designer; the running API processes drop the designer's cached tokens at commit.
    `audited`: the change's audit action, which also ends the designer's sessions."""
    engine = make_engine(settings)
    notifier = Notifier(engine)  # sends the SQLite datagrams (PostgreSQL: NOTIFY in the transaction)
    await notifier.start()
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            designer_id = await session.scalar(
                update(Designer).where(Designer.name == name).values(**values).returning(Designer.id)
            )
            if designer_id is None:
                raise UserError(f"no designer {name!r}")
            notify.designer_changed(session, designer_id)
            if audited is not None:
                await sessions.revoke_all(session, designer_id, audited)
                details = {k: v for k, v in values.items() if k == "role"}
                audit.record(session, audited, CLI, target=("designer", designer_id), details=details)
    finally:
        await notifier.close()
        await engine.dispose()


async def disable_designer(settings: Settings, name: str) -> None:
    await _set(settings, name, "user_disabled", is_active=False)


async def set_role(settings: Settings, name: str, role: Role) -> None:
    """Change a designer's role; their cached sessions are dropped, so it applies at the next request."""
    await _set(settings, name, "role_changed", role=role.value)


async def password_link(settings: Settings, name: str, email: str | None = None) -> str:
    """A one-time link for the designer to set a password (and their sign-in email, when given)."""
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            designer = await session.scalar(select(Designer).where(Designer.name == name))
            if designer is None:
                raise UserError(f"no designer {name!r}")
            if email:
                designer.email = sign_in.normalize_email(email)
            if not designer.email:
                raise UserError(f"designer {name!r} has no email: give one with --email")
            link, _ = await sign_in.create_link(session, settings, designer, None)
            audit.record(session, "password_link_created", CLI, target=("designer", designer.id))
            return link
    finally:
        await engine.dispose()


async def list_designers(settings: Settings) -> list[tuple[str, bool]]:
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(select(Designer.name, Designer.is_active).order_by(Designer.name))
            return [(r.name, r.is_active) for r in rows]
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.users", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("create", "rotate", "disable"):
        sub.add_parser(command).add_argument("name")
    sub.add_parser("list")
    link = sub.add_parser("link")
    link.add_argument("name")
    link.add_argument("--email")
    role = sub.add_parser("role")
    role.add_argument("name")
    role.add_argument("role", choices=[r.value for r in Role])
    args = parser.parse_args(argv)
    settings = get_settings()
    out = sys.stdout
    try:
        if args.command == "create":
            token = asyncio.run(create_designer(settings, args.name))
            out.write(f"designer {args.name} created; token (shown once):\n{token}\n")
        elif args.command == "rotate":
            token = new_token()
            asyncio.run(_set(settings, args.name, token_hash=hash_token(token), is_active=True))
            out.write(f"new token for {args.name} (shown once):\n{token}\n")
        elif args.command == "role":
            asyncio.run(set_role(settings, args.name, Role(args.role)))
            out.write(f"designer {args.name} is now {args.role}\n")
        elif args.command == "link":
            url = asyncio.run(password_link(settings, args.name, args.email))
            out.write(f"one-time link for {args.name} to set a password (shown once):\n{url}\n")
        elif args.command == "disable":
            asyncio.run(disable_designer(settings, args.name))
            out.write(f"designer {args.name} disabled\n")
        else:
            for name, active in asyncio.run(list_designers(settings)):
                out.write(f"{name}\t{'active' if active else 'disabled'}\n")
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
