"""Before the API starts: migrate the database, publish the built-in templates when they changed, and
create the demo designer (embedded default; a lead unless DEMO_DESIGNER_ROLE says otherwise).

`python -m backend.prestart` (systemd `ExecStartPre`, `make run`); `--wait` only waits until the schema
is at head (for the dispatcher, which must not race the migration).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from backend.config import Settings, get_settings
from backend.db import make_engine, make_sessionmaker
from backend.logs import configure_logging
from backend.migrate import alembic_config, upgrade
from backend.models import Role
from backend.template_builtins import publish_builtins
from backend.users import ensure_designer, set_role
from contract.styles import load_manifest

logger = logging.getLogger(__name__)
WAIT_TIMEOUT_S = 120.0


async def _current_revision(settings: Settings) -> str | None:
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:

            def _rev(sync_conn: Connection) -> str | None:
                return MigrationContext.configure(sync_conn).get_current_revision()

            return await conn.run_sync(_rev)
    finally:
        await engine.dispose()


def wait_for_schema(settings: Settings, timeout_s: float = WAIT_TIMEOUT_S) -> None:
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if asyncio.run(_current_revision(settings)) == head:
                return
        except Exception as exc:
            logger.info("database not ready yet: %s", exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"database schema not at {head} after {timeout_s:.0f}s")
        time.sleep(0.5)


async def _publish_builtins(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        await publish_builtins(make_sessionmaker(engine), settings, load_manifest(settings.style_manifest))
    finally:
        await engine.dispose()


def prestart(settings: Settings) -> None:
    upgrade(settings)
    asyncio.run(_publish_builtins(settings))
    if settings.demo_designer_token:
        name = settings.demo_designer_name
        if asyncio.run(ensure_designer(settings, name, settings.demo_designer_token)):
            logger.info("demo designer %r ready (token from DEMO_DESIGNER_TOKEN)", name)
        asyncio.run(set_role(settings, name, Role(settings.demo_designer_role)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.prestart", description=__doc__)
    parser.add_argument("--wait", action="store_true", help="only wait until the schema is migrated")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings)
    if args.wait:
        wait_for_schema(settings)
    else:
        prestart(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
