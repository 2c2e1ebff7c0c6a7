"""Database engine and sessions: SQLite pragmas or a PostgreSQL pool; reader and writer transactions.

One AsyncEngine per process, made by the entry point (API lifespan, dispatcher start).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from backend.config import Settings

SessionMaker = async_sessionmaker[AsyncSession]


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def make_engine(settings: Settings) -> AsyncEngine:
    """An engine for DATABASE_URL: WAL + busy timeout + foreign keys on SQLite, a sized pool on PostgreSQL."""
    url = settings.database_url
    if settings.is_sqlite:
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            poolclass=NullPool if path is None else None,
            connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
        )
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=10,
    )


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_begin) instead of the driver's implicit BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # BEGIN IMMEDIATE: a writer takes the lock up front, so two writers never deadlock on upgrade
        # and a claim is atomic across processes. Read-only transactions are marked "deferred".
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode != SQLITE_NO_BEGIN:
            conn.exec_driver_sql(f"BEGIN {mode}")


SQLITE_NO_BEGIN = "none"  # `sqlite_begin` for `single_reads`: statements run in SQLite's autocommit mode
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def writing(session: AsyncSession) -> AsyncIterator[None]:
    """`session.begin()`, one writer at a time per process on SQLite.

    SQLite has one write lock per file; connections that find it taken wait in SQLite's busy handler,
    which sleeps in growing steps (up to 100 ms) rather than waking when the lock is freed. Queuing a
    process's writers on an asyncio lock instead leaves only the other processes to contend with.
    """
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        async with session.begin():
            yield
        return
    lock = _SQLITE_WRITERS.setdefault(bind, asyncio.Lock())
    async with lock, session.begin():
        yield


@contextlib.asynccontextmanager
async def single_reads(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose statements each read on their own, outside any transaction: no BEGIN and no
    COMMIT/ROLLBACK round trips. Only for reads where one statement's snapshot is enough (SQLite runs
    each statement atomically in autocommit mode; PostgreSQL is switched to AUTOCOMMIT, client-side)."""
    options: dict[str, Any] = (
        {"sqlite_begin": SQLITE_NO_BEGIN}
        if engine.dialect.name == "sqlite"
        else {"isolation_level": "AUTOCOMMIT"}
    )
    async with engine.connect() as conn:
        yield await conn.execution_options(**options)


def make_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


async def read_session(sessionmaker: SessionMaker) -> AsyncSession:
    """A session whose SQLite transactions start DEFERRED (readers never take the write lock)."""
    session = sessionmaker()
    await begin_read(session)
    return session


async def begin_read(session: AsyncSession) -> None:
    """Start the session's next transaction as a reader (SQLite: DEFERRED, no write lock)."""
    await session.connection(execution_options={"sqlite_begin": "DEFERRED"})


@contextlib.asynccontextmanager
async def reading(session: AsyncSession) -> AsyncIterator[None]:
    """One read-only transaction on a session that also writes: on SQLite it never takes the write lock.
    It commits (a no-op for a reader) rather than rolls back, so what it loaded stays usable."""
    await begin_read(session)
    try:
        yield
    except BaseException:
        await session.rollback()
        raise
    await session.commit()


async def dispose(engine: AsyncEngine) -> None:
    await asyncio.shield(engine.dispose())


def is_connection_error(exc: DBAPIError) -> bool:
    """A database that is unreachable or busy (worth retrying), as opposed to a bug in a statement."""
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError | InterfaceError)
