"""A PostgreSQL server of one's own, to restart: Debian's binaries, a fresh cluster in a temporary folder,
on a free loopback port, trust authentication, removed at the end.

The shared server the suite clones its databases from is never restarted; whoever needs a server that
goes down and comes back (the soak) starts one of these. initdb refuses to run as root: as root the
cluster belongs to the `postgres` system user (`runuser`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.support.net import free_port, wait_until

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVICE_USER = "postgres"
READY_TIMEOUT_S = 30.0


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or no user to run them as."""


def pg_bin() -> Path:
    found = sorted(Path("/").glob(BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
    if not found or not (found[-1] / "initdb").exists():
        raise ClusterUnavailable(f"no initdb under {BIN_GLOB}")
    return found[-1]


class PgCluster:
    """One cluster: `start`, `restart(mode)` (fast: a clean shutdown; immediate: a crash), `stop`."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.bin = pg_bin()
        self.root, self.port = root, port or free_port()
        self.data = root / "data"
        self.log_path = root / "postgresql.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVICE_USER)
            except KeyError as exc:
                raise ClusterUnavailable(f"running as root and there is no {SERVICE_USER} user") from exc
            self.as_user = ["runuser", "-u", SERVICE_USER, "--"]

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.as_user, str(self.bin / tool), *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)

    def init(self) -> PgCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.root, SERVICE_USER, SERVICE_USER)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        conf = f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
        conf += "max_connections = 200\nfsync = on\n"
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(conf)
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "start")
        wait_until(self.answers, READY_TIMEOUT_S, 0.1, f"PostgreSQL on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast", down_s: float = 0.0) -> None:
        """Stop the server (every connection is cut), stay down `down_s`, start it again."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URL."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A running cluster of one's own until the block ends; then stopped and its files removed."""
    root = Path(tempfile.mkdtemp(prefix="studio-pg-"))
    cluster = PgCluster(root)
    try:
        cluster.init().start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
