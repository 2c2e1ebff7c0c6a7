"""The migrations build the schema `models.py` describes, on SQLite and PostgreSQL, and go back down."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from backend.config import Settings
from backend.db import make_engine
from backend.migrate import alembic_config, upgrade
from backend.models import Base

# SQLite's reflection does not report an index column's sort order (`priority DESC`): that one index is
# compared on PostgreSQL only.
SQLITE_UNREFLECTED = {"ix_jobs_claim"}


def _settings(db_url: str) -> Settings:
    return Settings(_env_file=None, database_url=db_url)  # type: ignore[call-arg]


async def _diff(db_url: str) -> list[Any]:
    engine = make_engine(_settings(db_url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


def _index_name(change: Any) -> str | None:
    return getattr(change[1], "name", None) if isinstance(change, tuple) else None


async def test_migrations_match_the_models(db_url: str) -> None:
    diff = await _diff(db_url)
    if db_url.startswith("sqlite"):
        diff = [c for c in diff if _index_name(c) not in SQLITE_UNREFLECTED]
    assert diff == []


async def _jobs_indexes(db_url: str) -> set[str]:
    engine = make_engine(_settings(db_url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: {ix["name"] for ix in inspect(c).get_indexes("jobs")})
    finally:
        await engine.dispose()


def test_queue_indexes_downgrade_and_upgrade_again(db_url: str) -> None:
    # sync: Alembic's env.py runs its own event loop
    settings = _settings(db_url)
    command.downgrade(alembic_config(settings), "0001")
    assert {"ix_jobs_claim", "ix_jobs_designer_status"}.isdisjoint(asyncio.run(_jobs_indexes(db_url)))
    upgrade(settings)
    assert {"ix_jobs_claim", "ix_jobs_designer_status", "ix_jobs_queue"} <= asyncio.run(_jobs_indexes(db_url))


async def _uploads(db_url: str) -> tuple[set[str], list[tuple[str, str]]]:
    engine = make_engine(_settings(db_url))
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("uploads")}
            )
            rows = (await conn.execute(text("SELECT id, sha256 FROM uploads ORDER BY id"))).all()
            return columns, [tuple(r) for r in rows]
    finally:
        await engine.dispose()


async def _add_uploads(db_url: str) -> None:
    engine = make_engine(_settings(db_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO designers (id, name, token_hash, is_active, created_at) "
                    "VALUES ('d1', 'alice', 'h', true, CURRENT_TIMESTAMP)"
                )
            )
            for upload_id, role in (("u1", "sketch"), ("u2", "photo"), ("u3", "style_photo")):
                await conn.execute(
                    text(
                        "INSERT INTO uploads (id, designer_id, sha256, storage_key, original_name, width, "
                        "height, size_bytes, dark_lines, created_at, role) VALUES (:id, 'd1', 'same', 'k', "
                        "'', 64, 64, 1, false, CURRENT_TIMESTAMP, :role)"
                    ),
                    {"id": upload_id, "role": role},
                )
    finally:
        await engine.dispose()


def test_upload_roles_downgrade_and_upgrade_again(db_url: str) -> None:
    """0011 down: the uploads the old uniqueness cannot hold (other roles than sketch) go; up again."""
    settings = _settings(db_url)
    asyncio.run(_add_uploads(db_url))  # one image in three roles
    command.downgrade(alembic_config(settings), "0010")
    columns, rows = asyncio.run(_uploads(db_url))
    assert "role" not in columns and rows == [("u1", "same")]
    upgrade(settings)
    columns, rows = asyncio.run(_uploads(db_url))
    assert {"role", "source_key", "matte_key", "cutout", "derived_from"} <= columns and rows == [
        ("u1", "same")
    ]
