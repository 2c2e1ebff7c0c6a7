"""Wake-ups between processes: "a job was queued" (for dispatchers), "job X has a new event" (for streams),
"job X has a new live preview" (for streams; the image is in `job_previews`, see backend/previews.py),
"designer X was disabled or got a new token" (for the API workers' token caches).

A notification is a hint that saves a poll's wait, never the only way news travels: dispatchers and
EventHubs keep polling (DISPATCHER_POLL_S, EVENT_POLL_S), so a lost notification delays, never loses.

Writers mark what their transaction changed (`job_event`, with the job's kind when it is claimable again);
the marks are sent only if the transaction commits:
- PostgreSQL: `NOTIFY` inside the transaction itself (one `SELECT pg_notify(...)` before COMMIT), so
  PostgreSQL delivers it at commit to every listening process on every host, and drops it on rollback.
  Each process listens on one autocommit psycopg connection of its own, reconnecting after a loss.
- SQLite (one host by nature): after COMMIT a datagram to every listener's Unix socket, in a folder
  beside the database file (`.<name>.notify/`: every process of the deployment can write there, where
  each systemd unit's /tmp is private), or in the temporary directory where that path would be too
  long for a socket. A listener's socket goes when it closes; one left by a killed process refuses the
  datagram and is removed by the next sender.
- Listeners in the writer's own process are called directly, whatever the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

JOBS = "studio_jobs"  # payload: the job's kind ("text", "sketch")
EVENTS = "studio_events"  # payload: the job's id
DESIGNERS = "studio_designers"  # payload: the designer's id
PREVIEWS = "studio_previews"  # payload: the job's id
_PENDING = "studio_notify"  # Session.info key: the (channel, payload) pairs of the open transaction
_RECONNECT_MAX_S = 5.0
_DATAGRAM_MAX = 512

Listener = Callable[[str], None]


def job_event(session: AsyncSession | Session, job_id: str, *, queued_kind: str | None = None) -> None:
    """Mark: job `job_id` has a new event (and, with `queued_kind`, is claimable again)."""
    pending = _pending(session)
    pending.add((EVENTS, job_id))
    if queued_kind is not None:
        pending.add((JOBS, queued_kind))


def job_preview(session: AsyncSession | Session, job_id: str) -> None:
    """Mark: job `job_id` has a new live preview."""
    _pending(session).add((PREVIEWS, job_id))


def designer_changed(session: AsyncSession | Session, designer_id: str) -> None:
    """Mark: designer `designer_id` was disabled or given a new token (cached tokens must go)."""
    _pending(session).add((DESIGNERS, designer_id))


def _pending(session: AsyncSession | Session) -> set[tuple[str, str]]:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    pending: set[tuple[str, str]] = sync.info.setdefault(_PENDING, set())
    return pending


# --------------------------------------------------------------------- the transaction's side


@event.listens_for(Session, "before_commit")
def _notify_in_transaction(session: Session) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return
    ordered = sorted(pending)
    calls = ", ".join(f"pg_notify(:c{i}, :p{i})" for i in range(len(ordered)))
    params = {k: v for i, (c, p) in enumerate(ordered) for k, v in ((f"c{i}", c), (f"p{i}", p))}
    session.execute(text(f"SELECT {calls}"), params)


@event.listens_for(Session, "after_commit")
def _notify_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    bind = session.get_bind()
    for hub in list(_HUBS.get(bind if isinstance(bind, Engine) else bind.engine, ())):
        hub.committed(pending)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


# --------------------------------------------------------------------- the process's side


class Notifier:
    """One per process and engine: delivers what its writers commit, and what other processes send."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._listeners: dict[str, list[Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._socket_path: Path | None = None
        self._folder = _sqlite_folder(engine)
        self._peers: list[Path] = []
        self._peers_mtime = -1
        self._sender: socket.socket | None = None
        self.connected = asyncio.Event()  # listening for other processes (tests wait on it)

    def add_listener(self, channel: str, listener: Listener) -> None:
        self._listeners.setdefault(channel, []).append(listener)

    async def start(self) -> None:
        _HUBS.setdefault(self.engine.sync_engine, []).append(self)
        if self.engine.dialect.name == "postgresql":
            self._task = asyncio.create_task(self._listen_postgres(), name="notify listener")
        elif self._folder is not None:
            try:
                self._listen_socket()
            except OSError as exc:
                logger.warning("no notifications from other processes (%s): polling only", exc)
                self._folder = None

    async def close(self) -> None:
        hubs = _HUBS.get(self.engine.sync_engine, [])
        if self in hubs:
            hubs.remove(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._socket is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
        if self._socket_path is not None:
            self._socket_path.unlink(missing_ok=True)
        if self._sender is not None:
            self._sender.close()

    # --- delivery ----------------------------------------------------------------------------------
    def deliver(self, channel: str, payload: str) -> None:
        for listener in self._listeners.get(channel, ()):
            try:
                listener(payload)
            except Exception:
                logger.exception("notification listener failed")

    def committed(self, pending: set[tuple[str, str]]) -> None:
        """A transaction of this process committed: wake local listeners; SQLite: tell the other processes.
        (PostgreSQL delivers to the other processes, and back to this one's listener: a spare wake-up.)"""
        for channel, payload in pending:
            self.deliver(channel, payload)
        if self._folder is not None:
            self._send_datagrams(pending)

    # --- PostgreSQL ------------------------------------------------------------------------------------
    async def _listen_postgres(self) -> None:
        import psycopg

        url = make_url(self.engine.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        delay = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {JOBS}")
                    await conn.execute(f"LISTEN {EVENTS}")
                    await conn.execute(f"LISTEN {DESIGNERS}")
                    await conn.execute(f"LISTEN {PREVIEWS}")
                    self.connected.set()
                    delay = 0.1
                    async for note in conn.notifies():
                        self.deliver(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                logger.warning("notification listener lost its connection (%s); polling meanwhile", exc)
            await asyncio.sleep(delay)
            delay = min(_RECONNECT_MAX_S, delay * 2)

    # --- SQLite: Unix datagrams --------------------------------------------------------------------------
    def _listen_socket(self) -> None:
        assert self._folder is not None
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._folder / f"{os.getpid()}-{secrets.token_hex(4)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(str(path))
        self._socket, self._socket_path = sock, path
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)
        self.connected.set()

    def _receive(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(_DATAGRAM_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                logger.exception("notification socket failed")
                return
            channel, _, payload = data.decode(errors="replace").partition("\n")
            self.deliver(channel, payload)

    def _send_datagrams(self, pending: set[tuple[str, str]]) -> None:
        assert self._folder is not None
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        messages = [f"{c}\n{p}".encode()[:_DATAGRAM_MAX] for c, p in pending]
        for peer in self._peer_paths():
            if peer == self._socket_path:
                continue
            for message in messages:
                try:
                    self._sender.sendto(message, str(peer))
                except (ConnectionRefusedError, FileNotFoundError):
                    peer.unlink(missing_ok=True)  # its process is gone
                    self._peers_mtime = -1
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):  # a full queue: it polls anyway
                        logger.warning("notification to %s failed: %s", peer.name, exc)
                    break

    def _peer_paths(self) -> list[Path]:
        assert self._folder is not None
        try:
            mtime = self._folder.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if mtime != self._peers_mtime:
            self._peers_mtime = mtime
            self._peers = [Path(e.path) for e in os.scandir(self._folder)]
        return self._peers


_HUBS: weakref.WeakKeyDictionary[Engine, list[Notifier]] = weakref.WeakKeyDictionary()


_SOCKET_NAME_MAX = 24  # "<pid>-<8 hex>" and the slash
_SOCKET_PATH_MAX = 107  # sun_path, less its terminating NUL


def _sqlite_folder(engine: AsyncEngine) -> Path | None:
    """Where a SQLite database's listeners put their sockets: beside the file, or (a path too long for a
    socket) in the temporary directory under a name made from the file's path."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    path = Path(database).resolve()
    beside = path.with_name(f".{path.name}.notify")
    if len(os.fsencode(beside)) + _SOCKET_NAME_MAX <= _SOCKET_PATH_MAX:
        return beside
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"studio-notify-{os.getuid()}-{digest}"
