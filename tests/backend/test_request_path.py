"""What the hottest routes ask of the database: integrations poll GET /api/jobs/{id}, designers POST
/api/jobs; each statement and transaction on their path is a round trip (on SQLite, several hops to
the driver's thread), so their number is part of the routes' contract. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import job_body
from tests.support.backend import Stack


class Recorder:
    """The statements and commits the API's engine sees (the stack runs no dispatcher and no stream)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commits = 0
        self._lock = threading.Lock()

    def statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        with self._lock:
            self.statements.append(statement.split(None, 1)[0].upper())

    def commit(self, _conn: Any) -> None:
        with self._lock:
            self.commits += 1


@contextmanager
def recording(stack: Stack) -> Iterator[Recorder]:
    engine: AsyncEngine = stack.api.server.config.app.state.engine  # type: ignore[union-attr]
    recorder = Recorder()
    event.listen(engine.sync_engine, "before_cursor_execute", recorder.statement)
    event.listen(engine.sync_engine, "commit", recorder.commit)
    try:
        yield recorder
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", recorder.statement)
        event.remove(engine.sync_engine, "commit", recorder.commit)


def test_reading_a_queued_job_is_one_statement_without_a_transaction(api_stack: Stack) -> None:
    with api_stack.client() as c:
        first = c.post("/api/jobs", json=job_body()).json()
        second = c.post("/api/jobs", json=job_body()).json()
        with recording(api_stack) as seen:
            r = c.get(f"/api/jobs/{second['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["queue_position"] == 2 and first["queue_position"] == 1
    assert seen.statements == ["SELECT"]  # the job and its position; no BEGIN, no image query
    assert seen.commits == 0


def test_creating_a_job_is_one_write_transaction(api_stack: Stack) -> None:
    with api_stack.client() as c:
        c.get("/api/me").raise_for_status()  # the token is looked up once, then cached
        with recording(api_stack) as seen:
            r = c.post("/api/jobs", json=job_body())
    assert r.status_code == 201, r.text
    assert r.json()["queue_position"] == 1
    # First the built-in `text` template's current version is read (the template, then the version
    # it points at: the graph the job stores), outside the write transaction; then one write.
    if api_stack.settings.is_sqlite:  # the position is counted outside SQLite's write lock
        reads = ["BEGIN", "SELECT", "SELECT"]  # a deferred read: no write lock is held for it
        assert seen.statements == [
            *reads,
            "BEGIN",
            "INSERT",
            "INSERT",
            "SELECT",
        ]  # IMMEDIATE; job; event; position
    else:  # the event's INSERT counts the position
        assert seen.statements == [
            "SELECT",
            "SELECT",
            "INSERT",
            "INSERT",
            "SELECT",
        ]  # …; job; event; pg_notify
    assert (
        seen.commits == 2
    )  # the read's (it holds no lock) and the write's; SQLite's count opens no transaction
